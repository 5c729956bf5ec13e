"""Unit tests of the LLM layer's pieces: validation, cache, retries, filters, templates, prices."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter

import pytest

from hybridscore.errors import HybridscoreError
from hybridscore.llm.cache import SHARD_DIR, ReplyCache
from hybridscore.llm.prompt import load_template
from hybridscore.llm.retry import RetryPolicy, TransientError, call_with_retries, parse_retry_after
from hybridscore.llm.textfilters import DuplicateIndex, contamination
from hybridscore.llm.tokens import PriceTable, estimate_prompt_tokens
from hybridscore.llm.types import Request
from hybridscore.llm.validate import (
    Rejected,
    check_item,
    parse_grade,
    parse_json_reply,
    parse_lenient,
    responses_schema,
    usable_items,
)


def _request(schema: bool = True, count: int = 2) -> Request:
    return Request(
        key="k",
        messages=(("user", "hi"),),
        temperature=0.3,
        max_tokens=50,
        seed=1,
        n=1,
        count=count,
        label="correct",
        schema=responses_schema("correct", count) if schema else None,
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
        _request(), [reply, good, "{broken"], min_chars=3, max_chars=400, rejections=rejections
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


def test_cache_survives_reopen_skips_a_torn_line_and_keeps_the_first_write(tmp_path) -> None:
    with ReplyCache(tmp_path) as cache:
        cache.put("a", {"choices": ["one"]})
        cache.put("a", {"choices": ["other"]})
        cache.put("b", {"choices": ["two"]})
    shard = next((tmp_path / SHARD_DIR).glob("*.jsonl"))
    with shard.open("ab") as handle:
        handle.write(b'{"key": "c", "choi')  # what kill -9 mid-write can leave
    reopened = ReplyCache(tmp_path)
    assert reopened.get("a")["choices"] == ["one"]
    assert len(reopened) == 2 and "c" not in reopened and reopened.torn_lines == 1
    reopened.put("c", {"choices": ["three"]})  # a new process writes a new shard
    reopened.close()
    assert len(list((tmp_path / SHARD_DIR).glob("*.jsonl"))) == 2
    assert ReplyCache(tmp_path).get("c")["choices"] == ["three"]


def test_retry_after_is_a_floor_and_backoff_grows() -> None:
    policy = RetryPolicy(max_retries=5, base_delay=0.1, max_delay=10)
    rng = random.Random(0)
    assert all(policy.delay(0, 2.5, rng) >= 2.5 for _ in range(50))
    assert max(policy.delay(4, None, rng) for _ in range(200)) > 0.8
    assert max(policy.delay(0, None, rng) for _ in range(200)) <= 0.1
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None


def test_call_with_retries_counts_and_gives_up() -> None:
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("http_503", retry_after=0.0)
        return "ok"

    policy = RetryPolicy(max_retries=3, base_delay=0.0)
    assert asyncio.run(call_with_retries(flaky, policy)) == ("ok", 2)
    calls.clear()
    with pytest.raises(Exception, match="gave up after 1 retries"):
        asyncio.run(call_with_retries(flaky, RetryPolicy(max_retries=1, base_delay=0.0)))


def test_duplicate_index_finds_exact_and_near_duplicates_only() -> None:
    index = DuplicateIndex(threshold=0.7)
    index.add("The plant needs light to make its food from water and air.")
    assert index.match("the plant NEEDS light, to make its food from water and air") == "exact"
    assert index.match("The plant needs light to make its food from water and the air.") == "near"
    assert index.match("Magnets attract iron but not brass rings.") is None
    assert DuplicateIndex(threshold=1.0).match("anything") is None


def test_contamination_counts_shared_ngrams() -> None:
    held_out = ["the nail sticks because it is made of iron"]
    report = contamination(
        ["so the nail sticks because it is iron", "brass is not magnetic at all"], held_out, n=3
    )
    assert report["rows"] == 2 and report["rows_with_overlap"] == 1
    assert 0 < report["ngram_overlap_fraction"] < 1 and report["exact_matches"] == 0


def test_template_sections_and_missing_placeholders(tmp_path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("# comment\n[system]\nYou grade ${label}.\n[user]\nQ: ${question}\n")
    template = load_template(str(path))
    assert template.render(label="L", question="Q1") == (
        ("system", "You grade L."),
        ("user", "Q: Q1"),
    )
    with pytest.raises(HybridscoreError, match="placeholder"):
        template.render(label="L")
    path.write_text("no sections")
    with pytest.raises(HybridscoreError, match=r"\[system\]"):
        load_template(str(path))


def test_price_table_costs_and_worst_case() -> None:
    price = PriceTable(2.5, 10.0, discount=0.5)
    assert price.cost(1_000_000, 1_000_000) == pytest.approx(6.25)
    request = _request()
    expected = price.cost(estimate_prompt_tokens(request), request.max_tokens * request.n)
    assert price.worst_case(request) == pytest.approx(expected) and expected > 0


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
