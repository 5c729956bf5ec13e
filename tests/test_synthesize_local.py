"""The synthesize stage with the offline default backend and the real SmolLM2-135M (slow)."""

from __future__ import annotations

import json
import shutil

import pytest
from synth_helpers import LABELS, make_workspace

from hybridscore import synthesize
from hybridscore.data import read_table

pytestmark = pytest.mark.slow

TINY = {
    "backend": "local",
    "responses_per_label": 2,
    "n": 4,
    "max_new_tokens": 24,
    "examples_per_label": 2,
    "topup_rounds": 2,
}


def test_local_backend_yields_rows_for_every_label_deterministically(tmp_path, monkeypatch):
    make_workspace(tmp_path, TINY)
    monkeypatch.chdir(tmp_path)
    synthesize.main(["--no-progress"])
    rows = read_table("data/synthetic/rows.csv")
    report = json.loads((tmp_path / "metrics/synthesize.json").read_text())
    assert set(rows["label"]) == set(LABELS) and len(rows) <= 6
    assert (rows["source"] == "synthetic").all() and rows["text"].str.len().gt(0).all()
    assert report["completion_tokens"] > 0 and report["cost_usd"] == 0
    train = set(read_table("data/prepared/train.csv")["text"])
    assert not set(rows["text"]) & train  # no copied few-shot example survives

    shutil.move("data/llm_cache", "first_cache")  # same seed, empty cache: same rows
    synthesize.main(["--no-progress"])
    assert read_table("data/synthetic/rows.csv").equals(rows)
