"""params.yaml validation: every bad key gives one clear message naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, write_params

from hybridscore.errors import HybridscoreError
from hybridscore.params import load_params


def test_repo_params_are_valid() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.mix.synthetic_ratio == pytest.approx(0.2)
    assert params.train_teacher.model == "pypi:all-mpnet-base-v2"


def test_training_seed_defaults_to_the_top_level_seed(tmp_path: Path) -> None:
    params = load_params(write_params(tmp_path, {"seed": 5, "distill": {"seed": 7}}))
    assert params.distill.training_seed(params.seed) == 7
    assert params.train_teacher.training_seed(params.seed) == 5  # null: the top-level seed


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"mix": {"synthetic_ratio": 1.5}},
            "mix.synthetic_ratio: Input should be less than or equal to 1",
        ),
        ({"mix": {"synthetic_rate": 0.5}}, "mix.synthetic_rate: unknown key"),
        ({"distill": {"seed": "x"}}, "distill.seed"),
        ({"train_teacher": {"model": ""}}, "train_teacher.model"),
        ({"synthesize": {"temperature": "hot"}}, "synthesize.temperature"),
        ({"data": {"labels": ["a", "a"]}}, "data.labels"),
        ({"train_teacher": {"mixed_precision": "fp8"}}, "train_teacher.mixed_precision"),
        ({"distill": {"cpu_threads": 0}}, "distill.cpu_threads: Input should be greater than 0"),
    ],
)
def test_bad_params_name_the_key(tmp_path: Path, overrides: dict, expected: str) -> None:
    path = write_params(tmp_path, overrides)
    with pytest.raises(HybridscoreError) as info:
        load_params(path)
    message = str(info.value)
    assert str(path) in message
    assert expected in message


def test_missing_required_section(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\n")
    with pytest.raises(HybridscoreError, match=r"data: Field required"):
        load_params(path)


def test_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("seed: [1\n")
    with pytest.raises(HybridscoreError, match="not valid YAML"):
        load_params(path)


def test_stage_exits_2_with_one_message(workspace: Path) -> None:
    write_params(
        workspace, {"data": {"source": "data/source.csv"}, "mix": {"synthetic_ratio": 1.5}}
    )
    done = subprocess.run(
        [sys.executable, "-m", "hybridscore.prepare"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "mix.synthetic_ratio" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (workspace / "data" / "prepared").exists()
