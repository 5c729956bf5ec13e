"""Shared fixtures: a scratch workspace with the repo's params.yaml and a small data source."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "scientsbank.csv"
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def deep_update(base: dict, overrides: dict) -> dict:
    """``base`` with nested ``overrides`` applied (a new dict)."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_update(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_params(directory: Path, overrides: dict | None = None) -> Path:
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(deep_update(repo_params(), overrides or {}), sort_keys=False))
    return path


def sample_rows(per_label: int = 10, seed: int = 0) -> pd.DataFrame:
    """A few real rows per label per split from the embedded SciEntsBank sample."""
    sample = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)
    shuffled = sample.sample(frac=1.0, random_state=seed)
    return shuffled.groupby(["split", "label"]).head(per_label).reset_index(drop=True)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch directory (cwd) with params.yaml pointing at a small copy of the sample."""
    data = tmp_path / "data" / "source.csv"
    data.parent.mkdir(parents=True)
    sample_rows().to_csv(data, index=False)
    write_params(tmp_path, {"data": {"source": "data/source.csv"}})
    monkeypatch.chdir(tmp_path)
    return tmp_path
