"""mix: exact ratios, stratification, composition, and clear errors when a pool is short."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from hybridscore import mix
from hybridscore.data import read_json, read_table, write_table
from hybridscore.errors import HybridscoreError
from hybridscore.params import MixParams

HUMAN = Path("data/prepared/train.csv")
SYNTHETIC = Path("data/synthetic/rows.csv")
OUT = Path("data/mixed/train.csv")
METRICS = Path("metrics/mix.json")


def run_mix(params: MixParams, seed: int) -> None:
    mix.run(params, seed, HUMAN, SYNTHETIC, OUT, METRICS)


def pool(n_per_label: int, source: str) -> pd.DataFrame:
    labels = ["a", "b", "c"]
    rows = [(f"{source}-{lab}-{i}", lab) for lab in labels for i in range(n_per_label)]
    return pd.DataFrame(
        {
            "id": [r[0] for r in rows],
            "question_id": "q",
            "text": [r[0] for r in rows],
            "label": [r[1] for r in rows],
            "source": source,
        }
    )


@pytest.fixture
def pools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_table(pool(40, "human"), HUMAN)
    write_table(pool(10, "synthetic"), SYNTHETIC)


@pytest.mark.parametrize(
    ("ratio", "human", "synthetic"), [(0.0, 120, 0), (0.2, 120, 30), (0.8, 7, 30), (1.0, 0, 30)]
)
def test_ratio_is_exact_and_as_large_as_possible(pools, ratio, human, synthetic) -> None:
    run_mix(MixParams(synthetic_ratio=ratio), seed=1)
    mixed = read_table(OUT)
    counts = mixed["source"].value_counts().to_dict()
    assert counts.get("human", 0) == human and counts.get("synthetic", 0) == synthetic
    assert not mixed["id"].duplicated().any()
    report = read_json(METRICS)
    assert report["rows"] == human + synthetic and report["synthetic_rows"] == synthetic


def test_total_rows_and_stratification(pools) -> None:
    run_mix(MixParams(synthetic_ratio=0.5, total_rows=30), seed=3)
    mixed = read_table(OUT)
    per_source_label = mixed.groupby(["source", "label"]).size()
    assert (per_source_label == 5).all()


def test_seeded(pools) -> None:
    run_mix(MixParams(synthetic_ratio=0.5, total_rows=30), seed=3)
    first = Path(OUT).read_text()
    run_mix(MixParams(synthetic_ratio=0.5, total_rows=30), seed=3)
    assert Path(OUT).read_text() == first
    run_mix(MixParams(synthetic_ratio=0.5, total_rows=30), seed=4)
    assert Path(OUT).read_text() != first


def test_not_enough_synthetic_rows(pools) -> None:
    with pytest.raises(
        HybridscoreError,
        match=r"need 40 human and 40 synthetic rows, but only 120 human .* and 30 synthetic",
    ):
        run_mix(MixParams(synthetic_ratio=0.5, total_rows=80), seed=1)
    assert not Path(OUT).exists()


@pytest.mark.parametrize(("ratio", "synthetic"), [(0.0, 0), (0.5, 15), (0.8, 60), (1.0, 30)])
def test_human_budget_keeps_that_many_per_label(pools, ratio: float, synthetic: int) -> None:
    write_table(pool(40, "synthetic"), SYNTHETIC)  # 120 synthetic rows to draw from
    run_mix(MixParams(synthetic_ratio=ratio, human_per_label=5), seed=1)
    mixed = read_table(OUT)
    human = mixed[mixed["source"] == "human"]
    expected_human = 0 if ratio == 1 else 15
    assert len(human) == expected_human
    if expected_human:
        assert (human["label"].value_counts() == 5).all()
    n_synthetic = int((mixed["source"] == "synthetic").sum())
    assert n_synthetic == (120 if ratio == 1 else synthetic)
    assert read_json(METRICS)["human_per_label"] == 5


def test_a_smaller_budget_is_part_of_a_larger_one(pools) -> None:
    chosen = {}
    for budget in (5, 10, 25):
        run_mix(MixParams(synthetic_ratio=0.0, human_per_label=budget), seed=1)
        chosen[budget] = set(read_table(OUT)["id"])
    assert chosen[5] < chosen[10] < chosen[25]


def test_a_budget_needs_enough_synthetic_rows(pools) -> None:
    with pytest.raises(HybridscoreError, match=r"need 60 synthetic rows, but only 30 exist"):
        run_mix(MixParams(synthetic_ratio=0.8, human_per_label=5), seed=1)
    assert not OUT.exists()


def test_budget_and_total_rows_are_exclusive() -> None:
    with pytest.raises(ValueError, match="set total_rows or human_per_label, not both"):
        MixParams(total_rows=10, human_per_label=5)
