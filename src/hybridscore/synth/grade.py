"""Judging replies: the acceptance test of a generation reply, and the consistency filter."""

from __future__ import annotations

from collections import Counter

from hybridscore.llm.engine import Engine, Judge
from hybridscore.llm.types import Request
from hybridscore.params import SynthesizeParams
from hybridscore.synth.plan import Planner, Slot
from hybridscore.synth.validate import Rejected, parse_grade, usable_items

MAX_GRADING_PASSES = 5  # rows that replace inconsistent ones are graded in further passes


def judge_reply(params: SynthesizeParams) -> Judge:
    """Accept a reply when at least one of its choices holds a usable item."""

    def judge(request: Request, choices: list[str]) -> str | None:
        reasons: Counter[str] = Counter()
        usable = usable_items(
            request,
            choices,
            min_chars=params.min_chars,
            max_chars=params.max_chars,
            rejections=reasons,
        )
        if usable:
            return None
        return reasons.most_common(1)[0][0] if reasons else "no_choices"

    return judge


def grade(
    planner: Planner, engine: Engine, pending: list[tuple[Slot, str]], grades: dict[str, str]
) -> None:
    """The consistency filter: grade each pending row blind; record text → label ("" = failed)."""
    labels, strict = planner.labels, planner.structured
    asked = [planner.grade_request(slot, text) for slot, text in pending]
    requests = {request.key: text for request, (_, text) in zip(asked, pending, strict=True)}

    def judge(request: Request, choices: list[str]) -> str | None:
        try:
            parse_grade(choices[0] if choices else "", labels, strict)
        except Rejected as exc:
            return exc.reason
        return None

    results = engine.run(asked, judge)
    for key, text in requests.items():
        choices = results.get(key)
        try:
            grades[text] = parse_grade(choices[0], labels, strict) if choices else ""
        except Rejected:
            grades[text] = ""
