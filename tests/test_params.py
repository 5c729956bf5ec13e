"""params.yaml validation: every bad key gives one clear message naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, write_params

from hybridscore.errors import HybridscoreError
from hybridscore.params import Params, load_params


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


def leaves(values: dict, prefix: str = "") -> dict[str, object]:
    """``{"a.b": value}`` for every leaf of a nested mapping."""
    flat: dict[str, object] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "prices":
            flat |= leaves(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_params_yaml_lists_every_key_with_the_code_default() -> None:
    """One source of defaults: a section left out of a params file means params.yaml's values."""
    written = load_params(REPO / "params.yaml").model_dump()
    defaults = Params(data=written["data"]).model_dump()  # data.source has no default
    assert leaves(written) == leaves(defaults)
    listed = leaves(yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8")))
    assert set(listed) == set(leaves(defaults))


def test_a_missing_section_means_the_documented_defaults(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("data:\n  source: x.csv\n")
    distill = load_params(path).distill
    assert (distill.epochs, distill.num_layers, distill.transfer_unused_human) == (20, 4, True)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"seed": True}, "seed: Value error, expected a number, not a boolean"),
        ({"distill": {"epochs": True}}, "distill.epochs: Value error, expected a number"),
        ({"mix": {"synthetic_ratio": False}}, "mix.synthetic_ratio: Value error, expected a"),
    ],
)
def test_booleans_are_not_numbers(tmp_path: Path, overrides: dict, expected: str) -> None:
    with pytest.raises(HybridscoreError, match=expected):
        load_params(write_params(tmp_path, overrides))


def test_a_duplicate_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\ndata:\n  source: a.csv\n  source: b.csv\n")
    with pytest.raises(HybridscoreError, match=r"duplicate key 'source'[\s\S]*line 4"):
        load_params(path)
