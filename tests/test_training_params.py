"""Training params and device checks: precision refused with the key named, YAML 'no'."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridscore.errors import HybridscoreError
from hybridscore.runtime import check_mixed_precision


def test_fp16_on_cpu_is_refused_with_the_key_named() -> None:
    with pytest.raises(HybridscoreError, match=r"params distill\.mixed_precision: 'fp16'"):
        check_mixed_precision("fp16", "cpu", "distill")
    check_mixed_precision("no", "cpu", "distill")
    check_mixed_precision("fp16", "cuda", "distill")


def test_params_survive_dvc_rewriting_the_unquoted_no(tmp_path: Path) -> None:
    """``dvc exp run -S`` rewrites params.yaml and drops the quotes of ``'no'`` (YAML: false)."""
    import shutil

    from dvc.utils.serialize import modify_yaml

    from hybridscore.params import load_params

    path = tmp_path / "params.yaml"
    shutil.copy(Path(__file__).resolve().parents[1] / "params.yaml", path)
    with modify_yaml(path) as params:
        params["train_teacher"]["epochs"] = 3
    assert "mixed_precision: no" in path.read_text()
    loaded = load_params(path)
    assert loaded.train_teacher.mixed_precision == loaded.distill.mixed_precision == "no"
    assert loaded.train_teacher.epochs == 3
