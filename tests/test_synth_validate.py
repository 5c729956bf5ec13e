"""Reply rules: JSON and lenient parsing, item checks, usable items, grades."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from synth_helpers import make_request

from hybridscore.synth.validate import (
    Rejected,
    check_item,
    parse_grade,
    parse_json_reply,
    parse_lenient,
    usable_items,
)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ('{"label": "correct", "responses": ["a", "b"', "invalid_json"),
        ("not json at all", "invalid_json"),
        ('{"answers": ["a"]}', "off_schema"),
        ('{"label": "correct", "responses": [1, 2]}', "off_schema"),
        ('["a", "b"]', "off_schema"),
        ('{"label": "incorrect", "responses": ["a"]}', "wrong_label"),
    ],
)
def test_bad_json_replies_are_rejected_with_their_reason(reply: str, reason: str) -> None:
    with pytest.raises(Rejected) as info:
        parse_json_reply(reply, "correct")
    assert info.value.reason == reason


def test_item_checks_drop_only_bad_items_and_count_them() -> None:
    reply = json.dumps({"label": "correct", "responses": ["   ", "x" * 500]})
    good = json.dumps({"label": "correct", "responses": ["plants need light", "ab"]})
    rejections: Counter[str] = Counter()
    kept = usable_items(
        make_request(), [reply, good, "{broken"], min_chars=3, max_chars=400, rejections=rejections
    )
    assert kept == ["plants need light"]
    assert rejections == {"empty": 1, "too_long": 1, "too_short": 1, "invalid_json": 1}


@pytest.mark.parametrize(
    ("text", "items"),
    [
        (
            "Here are 2 answers:\n1. Plants use light.\n2) They grow.",
            ["Plants use light.", "They grow."],
        ),
        ("- It would not stick.\n- It sticks.", ["It would not stick.", "It sticks."]),
        ('"The answer is 40 meters."\n\nThis is correct.', ["The answer is 40 meters."]),
        ('{"responses": ["a b", "c d"]}', ["a b", "c d"]),
        ("Student answer: it melts", ["it melts"]),
        ("", [""]),
    ],
)
def test_lenient_parsing_of_weak_model_output(text: str, items: list[str]) -> None:
    assert parse_lenient(text) == items


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Here's a new example:", "not_an_answer"),
        ("The answer is:", "not_an_answer"),
        ("I'm ready to help. What can I help you with?", "not_an_answer"),
        ("0.45", "no_words"),
        ("60 meters, 60 meters, 60 meters, 60 meters, 60 meters, 60 meters,", "repetitive"),
        ("No.", None),
        ("40m", None),
        ("It sticks because the nail is a temporary magnet.", None),
    ],
)
def test_item_check_rejects_meta_talk_and_noise(text: str, reason: str | None) -> None:
    assert check_item(text, min_chars=3, max_chars=400) == reason


def test_grades_are_parsed_strictly_from_json_and_leniently_from_text() -> None:
    labels = ["incorrect", "partial", "correct"]
    assert parse_grade('{"label": "partial"}', labels, strict=True) == "partial"
    for bad in ('{"label": "great"}', "partial"):
        with pytest.raises(Rejected):
            parse_grade(bad, labels, strict=True)
    assert (
        parse_grade("This answer is Incorrect, not correct.", labels, strict=False) == "incorrect"
    )
    assert parse_grade("correct", labels, strict=False) == "correct"
    with pytest.raises(Rejected, match="no_grade"):
        parse_grade("no idea", labels, strict=False)
