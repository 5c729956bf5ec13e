"""Reply rules: strict JSON-schema replies from APIs, lenient parsing for small local models.

A reply-level problem (unparsable JSON, wrong schema, a label other than the one asked for)
raises ``Rejected`` so the request is re-asked; item-level problems (empty, too short, too
long) drop just that item. Every rejection is counted by reason, never silently kept.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

from hybridscore.llm.types import Request


class Rejected(Exception):
    """A reply that must not be used; ``reason`` is a short metrics key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def responses_schema(label: str, count: int) -> dict[str, Any]:
    """Structured Outputs schema: the label the responses are for, and ``count`` responses."""
    return {
        "type": "object",
        "properties": {
            "label": {"type": "string", "enum": [label]},
            "responses": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": count,
                "maxItems": count,
            },
        },
        "required": ["label", "responses"],
        "additionalProperties": False,
    }


def grade_schema(labels: list[str]) -> dict[str, Any]:
    """Structured Outputs schema of a grading reply: one of ``labels``."""
    return {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(labels)}},
        "required": ["label"],
        "additionalProperties": False,
    }


def parse_grade(text: str, labels: list[str], strict: bool) -> str:
    """The grade in a reply: JSON ``{"label": L}`` (strict), else the first label it names."""
    if strict:
        try:
            label = json.loads(text).get("label")
        except (TypeError, ValueError, AttributeError):
            raise Rejected("invalid_json", text[:80]) from None
        if label not in labels:
            raise Rejected("off_schema", f"label {label!r} is not one of {labels}")
        return label
    found = [
        (m.start(), label)
        for label in labels
        for m in [re.search(rf"(?<!\w){re.escape(label)}(?!\w)", text, re.I)]
        if m
    ]
    if not found:
        raise Rejected("no_grade", text[:80])
    return min(found)[1]


def parse_json_reply(text: str, label: str | None) -> list[str]:
    """``{"label": L, "responses": [str, ...]}`` → the responses; anything else is ``Rejected``."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise Rejected("invalid_json", str(exc)[:80]) from None
    if not isinstance(data, dict) or not isinstance(data.get("responses"), list):
        raise Rejected("off_schema", "expected an object with a 'responses' list")
    if not all(isinstance(item, str) for item in data["responses"]):
        raise Rejected("off_schema", "'responses' must hold strings")
    stated = data.get("label")
    if label is not None and stated is not None and stated != label:
        raise Rejected("wrong_label", f"asked for {label!r}, reply is for {stated!r}")
    return list(data["responses"])


_LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\(?\d{1,2}[.):])\s+(.*)$")
_PREAMBLE = re.compile(r"^(here (is|are)|sure|okay|student answer|answer)\b.*:\s*$", re.I)
_LABEL_PREFIX = re.compile(r"^\s*(?:student )?answer\s*\d*\s*:\s*", re.I)


def _clean(item: str) -> str:
    item = _LABEL_PREFIX.sub("", item.strip())
    if len(item) >= 2 and item[0] == item[-1] and item[0] in "\"'":
        item = item[1:-1]
    return item.strip()


def parse_lenient(text: str) -> list[str]:
    """Best effort for weak models: a JSON reply, else list items, else the first paragraph."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            data = json.loads(stripped)
        except ValueError:
            data = None
        if isinstance(data, dict):
            data = data.get("responses")
        if isinstance(data, list) and all(isinstance(x, str) for x in data):
            return [_clean(x) for x in data]
    lines = [line for line in stripped.splitlines() if line.strip()]
    items = [m.group(1) for m in map(_LIST_ITEM.match, lines) if m]
    if items:
        return [_clean(x) for x in items]
    body = [line for line in lines if not _PREAMBLE.match(line.strip())]
    return [_clean(body[0])] if body else [""]


def parse_reply(request: Request, text: str) -> list[str]:
    """Responses in one choice of a reply (at most ``request.count``)."""
    items = parse_json_reply(text, request.label) if request.schema else parse_lenient(text)
    return items[: request.count]


_CHATTER = re.compile(
    r"\b(as an ai|i'm ready|i am ready|help you|your next question|student answers?\b|"
    r"teachers? (would|could)|graded?\b|grading|example|revised|your answer|you're|you are)|"
    r"^(here'?s|here is|here are|sure\b|okay\b|i think you|i will|i'll|note:)|:$",
    re.I,
)


_WORD = re.compile(r"[^\W\d_]")  # a letter: "40m" is an answer, "0.45" is noise


def check_item(text: str, *, min_chars: int, max_chars: int) -> str | None:
    """The reason an item is unusable on its own, or None."""
    if not text.strip():
        return "empty"
    if len(text) < min_chars:
        return "too_short"
    if len(text) > max_chars:
        return "too_long"
    if _CHATTER.search(text):
        return "not_an_answer"  # the model talking about the task instead of answering
    if not _WORD.search(text):
        return "no_words"
    words = text.lower().split()
    if len(words) >= 8 and len(set(words)) < 0.4 * len(words):
        return "repetitive"
    return None


def iter_usable(
    request: Request,
    choices: list[str],
    *,
    min_chars: int,
    max_chars: int,
    rejections: Counter[str],
) -> Iterator[tuple[int, int, str]]:
    """(choice index, item index, item) of every usable response, counting each rejection."""
    for c, choice in enumerate(choices):
        try:
            items = parse_reply(request, choice)
        except Rejected as exc:
            rejections[exc.reason] += 1
            continue
        for i, item in enumerate(items):
            item = item.strip()
            reason = check_item(item, min_chars=min_chars, max_chars=max_chars)
            if reason:
                rejections[reason] += 1
            else:
                yield c, i, item


def usable_items(
    request: Request,
    choices: list[str],
    *,
    min_chars: int,
    max_chars: int,
    rejections: Counter[str],
) -> list[str]:
    """All usable responses of a reply's choices, counting each rejection by reason."""
    found = iter_usable(
        request, choices, min_chars=min_chars, max_chars=max_chars, rejections=rejections
    )
    return [item for _, _, item in found]
