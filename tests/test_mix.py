"""mix: exact ratios, stratification, composition, and clear errors when a pool is short."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from hybridscore import mix
from hybridscore.data import read_json, read_table, write_table
from hybridscore.errors import HybridscoreError
from hybridscore.params import MixParams


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
    write_table(pool(40, "human"), mix.HUMAN)
    write_table(pool(10, "synthetic"), mix.SYNTHETIC)


@pytest.mark.parametrize(
    ("ratio", "human", "synthetic"), [(0.0, 120, 0), (0.2, 120, 30), (0.8, 7, 30), (1.0, 0, 30)]
)
def test_ratio_is_exact_and_as_large_as_possible(pools, ratio, human, synthetic) -> None:
    mix.run(MixParams(synthetic_ratio=ratio), seed=1)
    mixed = read_table(mix.OUT)
    counts = mixed["source"].value_counts().to_dict()
    assert counts.get("human", 0) == human and counts.get("synthetic", 0) == synthetic
    assert not mixed["id"].duplicated().any()
    report = read_json(mix.METRICS)
    assert report["rows"] == human + synthetic and report["synthetic_rows"] == synthetic


def test_total_rows_and_stratification(pools) -> None:
    mix.run(MixParams(synthetic_ratio=0.5, total_rows=30), seed=3)
    mixed = read_table(mix.OUT)
    per_source_label = mixed.groupby(["source", "label"]).size()
    assert (per_source_label == 5).all()


def test_seeded(pools) -> None:
    mix.run(MixParams(synthetic_ratio=0.5, total_rows=30), seed=3)
    first = Path(mix.OUT).read_text()
    mix.run(MixParams(synthetic_ratio=0.5, total_rows=30), seed=3)
    assert Path(mix.OUT).read_text() == first
    mix.run(MixParams(synthetic_ratio=0.5, total_rows=30), seed=4)
    assert Path(mix.OUT).read_text() != first


def test_not_enough_synthetic_rows(pools) -> None:
    with pytest.raises(
        HybridscoreError,
        match=r"need 40 human and 40 synthetic rows, but only 120 human .* and 30 synthetic",
    ):
        mix.run(MixParams(synthetic_ratio=0.5, total_rows=80), seed=1)
    assert not Path(mix.OUT).exists()
