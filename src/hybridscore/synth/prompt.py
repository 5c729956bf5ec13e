"""Prompts: template files with [system] / [user] sections (and an optional [reply]) and
${name} placeholders, and the reply-format strings and context the synthesis prompts are
filled with.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path

from hybridscore.errors import HybridscoreError

_SECTION = re.compile(r"^\[(system|user|reply)\]\s*$", re.M)


@dataclass(frozen=True)
class PromptTemplate:
    path: str
    text: str  # the whole file: part of every request key, so editing it re-asks
    system: string.Template
    user: string.Template
    # [reply]: the start of the model's reply, which a local model continues (prefill). A
    # 135M model asked for "an answer" mostly restates the prompt; continuing "- " after a
    # list of examples, it writes one more list item. Line breaks at its ends are dropped,
    # spaces are kept.
    reply: str = ""

    def render(self, **values: str) -> tuple[tuple[str, str], ...]:
        """The chat messages; a missing placeholder value is an error naming the template."""
        try:
            return (
                ("system", self.system.substitute(values).strip()),
                ("user", self.user.substitute(values).strip()),
            )
        except KeyError as exc:
            raise HybridscoreError(f"{self.path}: unknown placeholder ${{{exc.args[0]}}}") from None


def load_template(path: str) -> PromptTemplate:
    """Read a template file (comments: lines starting with ``#``; [reply] is optional)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HybridscoreError(f"{path}: prompt template not found") from None
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    parts = _SECTION.split(body)
    sections = dict(zip(parts[1::2], parts[2::2], strict=True))
    if len(sections) != len(parts) // 2 or not {"system", "user"} <= set(sections):
        raise HybridscoreError(
            f"{path}: a template needs one [system] and one [user] section (and at most one"
            " [reply])"
        )
    return PromptTemplate(
        str(path),
        text,
        string.Template(sections["system"]),
        string.Template(sections["user"]),
        sections.get("reply", "").strip("\r\n"),
    )


# The ${format} of a prompt: the reply shape each kind of backend is asked for.
JSON_RESPONSES_FORMAT = (
    'Reply in JSON: {"label": "<the grade>", "responses": [<the answers as strings>]}.'
)
ONE_ANSWER_FORMAT = "Reply with the answer only."
LIST_FORMAT = "Reply with a numbered list, one answer per line."
JSON_GRADE_FORMAT = 'Reply in JSON: {"label": "<the grade>"}.'
TEXT_GRADE_FORMAT = "Reply with the grade only."


def responses_format(structured: bool, count: int) -> str:
    """The reply format of a generation prompt asking for ``count`` answers."""
    if structured:
        return JSON_RESPONSES_FORMAT
    return ONE_ANSWER_FORMAT if count == 1 else LIST_FORMAT


def grade_format(structured: bool) -> str:
    """The reply format of a grading prompt."""
    return JSON_GRADE_FORMAT if structured else TEXT_GRADE_FORMAT


def context(question: str, reference: str, labels: list[str]) -> str:
    """The ${context} of both prompts: question, reference answer (when known), grade scale."""
    lines = []
    if question:
        lines.append(f"Question: {question}")
    if reference:
        lines.append(f"Reference answer: {reference}")
    lines.append(f"Grades, from lowest to highest: {', '.join(labels)}.")
    return "\n".join(lines) + "\n"
