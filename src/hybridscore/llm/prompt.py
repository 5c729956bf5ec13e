"""Prompt templates as files: ``[system]`` / ``[user]`` sections with ``${name}`` placeholders."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path

from hybridscore.errors import HybridscoreError

_SECTION = re.compile(r"^\[(system|user)\]\s*$", re.M)


@dataclass(frozen=True)
class PromptTemplate:
    path: str
    text: str  # the whole file: part of every request key, so editing it re-asks
    system: string.Template
    user: string.Template

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
    """Read a template file (comments: lines starting with ``#``)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HybridscoreError(f"{path}: prompt template not found") from None
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    parts = _SECTION.split(body)
    sections = dict(zip(parts[1::2], parts[2::2], strict=True))
    if set(sections) != {"system", "user"}:
        raise HybridscoreError(f"{path}: a template needs one [system] and one [user] section")
    return PromptTemplate(
        str(path), text, string.Template(sections["system"]), string.Template(sections["user"])
    )
