"""Prompt template files: sections, comments, placeholders."""

from __future__ import annotations

import pytest
from synth_helpers import PROMPTS

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


def test_a_reply_section_is_the_prefill_and_each_section_appears_once(tmp_path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("[system]\nS\n[user]\nU ${label}\n[reply]\n- \n")
    assert load_template(str(path)).reply == "- "  # line breaks dropped, spaces kept
    path.write_text("[system]\nS\n[user]\nU\n")
    assert load_template(str(path)).reply == ""
    path.write_text("[system]\nS\n[user]\nU\n[user]\nV\n")
    with pytest.raises(HybridscoreError, match="at most one"):
        load_template(str(path))


def test_the_examples_template_asks_with_examples_only_and_starts_the_reply() -> None:
    template = load_template(str(PROMPTS / "generate_responses_examples.txt"))
    messages = template.render(
        context="Question: LONG ITEM TEXT", label="2", examples="- an answer", count="1", format="F"
    )
    assert "LONG ITEM TEXT" not in str(messages) and "- an answer" in messages[1][1]
    assert template.reply == "-"
