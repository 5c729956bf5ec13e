"""The backend registry: every backend params accept is registered and declares its abilities."""

from __future__ import annotations

import typing

import pytest

from hybridscore.errors import HybridscoreError
from hybridscore.llm import BACKENDS, PriceTable, backend_class, min_fill, price_table
from hybridscore.params import SynthesizeParams


def test_the_registry_names_every_backend_params_accept() -> None:
    accepted = typing.get_args(SynthesizeParams.model_fields["backend"].annotation)
    assert set(accepted) == set(BACKENDS)
    with pytest.raises(HybridscoreError, match="unknown backend"):
        backend_class("no-such-backend")


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_each_backend_declares_what_it_supports(name: str) -> None:
    cls = backend_class(name)
    assert cls.name == name
    for ability in ("billed", "batch_priced", "structured_outputs"):
        assert isinstance(getattr(cls, ability), bool), ability
    assert callable(cls.from_params)
    # billed rows must all exist; the local default model may fall a little short
    assert 0 < cls.default_min_fill <= 1 and (cls.default_min_fill == 1.0 or not cls.billed)


def test_min_fill_null_is_the_backend_default_and_a_value_overrides_it() -> None:
    assert min_fill(SynthesizeParams(backend="openai")) == 1.0
    assert min_fill(SynthesizeParams(backend="openai-batch")) == 1.0
    assert min_fill(SynthesizeParams(backend="local")) == 0.75
    assert min_fill(SynthesizeParams(backend="local", min_fill=1.0)) == 1.0
    assert min_fill(SynthesizeParams(backend="openai", min_fill=0.5)) == 0.5


def test_prices_follow_what_the_backend_declares() -> None:
    local = SynthesizeParams(backend="local", model="gpt-4o")
    assert price_table(local) == PriceTable()  # unbilled: free whatever the model
    chat = SynthesizeParams(backend="openai", model="gpt-4o")
    assert price_table(chat) == PriceTable(2.5, 10.0, 1.0)
    batch = SynthesizeParams(backend="openai-batch", model="gpt-4o", batch_discount=0.5)
    assert price_table(batch) == PriceTable(2.5, 10.0, 0.5)
    assert price_table(SynthesizeParams(backend="openai", model="unpriced")) is None
