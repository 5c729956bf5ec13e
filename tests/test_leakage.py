"""Leakage audit: held-out texts (or near copies) in training/prompt texts."""

from __future__ import annotations

import time

import pytest

from hybridscore.errors import HybridscoreError
from hybridscore.leakage import audit, check

LONG = ("the plant uses light energy from the sun to turn water and carbon dioxide into sugar "
        "and oxygen in its green leaves every single day, and it stores the sugar it makes in "
        "its roots and stems for the night")  # fmt: skip
HELD_OUT = {"val": ["It needs water.", "heat moves to the cold side"], "test": [LONG, "mass"]}
HUMAN = ["plants need light", "It needs water."]  # a val answer a training student gave too


def test_a_copied_test_text_is_leakage_naming_the_split() -> None:
    report = audit(HELD_OUT, {"synthetic": ["something else", "  MASS!! "]}, HUMAN)
    assert report["exact"] == report["leaked"] == 1
    assert report["sources"]["synthetic"]["test"]["examples"] == ["  MASS!! "]
    with pytest.raises(HybridscoreError, match=r"synthetic.*test.*MASS"):
        check(report)


def test_a_near_duplicate_of_a_long_text_is_caught() -> None:
    changed = LONG.replace("green", "big")
    report = audit(HELD_OUT, {"train": [*HUMAN, changed], "transfer": ["plants need sun"]}, HUMAN)
    assert report["sources"]["train"]["test"]["near_duplicates"] == 1
    assert report["sources"]["transfer"]["test"]["leaked"] == 0
    with pytest.raises(HybridscoreError, match=r"train.*test"):
        check(report)
    assert audit(HELD_OUT, {"train": [changed]}, [], threshold=0.99)["leaked"] == 0


def test_a_duplicate_that_human_training_rows_share_is_reported_not_raised() -> None:
    report = audit(HELD_OUT, {"train": HUMAN, "synthetic": ["it needs WATER"]}, HUMAN)
    assert report["natural_duplicates"] == 2 and report["leaked"] == 0
    assert report["sources"]["train"]["val"]["natural_duplicates"] == 1
    check(report)


def test_thousands_of_texts_audit_fast() -> None:
    held = {"test": [f"answer {i} about light and water number {i * 7}" for i in range(3000)]}
    used = {"train": [f"reply {i} on heat and mass value {i * 3}" for i in range(5000)]}
    started = time.perf_counter()
    report = audit(held, used, used["train"])
    assert report["leaked"] == 0 and report["held_out_rows"] == {"test": 3000}
    assert time.perf_counter() - started < 20
