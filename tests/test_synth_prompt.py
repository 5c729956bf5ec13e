"""Prompt template files: sections, comments, placeholders."""

from __future__ import annotations

import pytest

from hybridscore.errors import HybridscoreError
from hybridscore.synth.prompt import load_template


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
