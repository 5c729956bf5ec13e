"""Generator backends behind one small interface, found by name in ``BACKENDS``.

Each backend module is imported only when its backend is used (``openai`` takes a second to
import); what a backend supports is read from its class, never inferred from its name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hybridscore.errors import HybridscoreError
from hybridscore.llm.tokens import PriceTable
from hybridscore.llm.types import Backend
from hybridscore.params import SynthesizeParams


def _local() -> type[Backend]:
    from hybridscore.llm.backends.local import LocalBackend

    return LocalBackend


def _openai() -> type[Backend]:
    from hybridscore.llm.backends.openai_chat import OpenAIBackend

    return OpenAIBackend


def _openai_batch() -> type[Backend]:
    from hybridscore.llm.backends.openai_batch import OpenAIBatchBackend

    return OpenAIBatchBackend


BACKENDS: dict[str, Callable[[], type[Backend]]] = {
    "local": _local,
    "openai": _openai,
    "openai-batch": _openai_batch,
}


def backend_class(name: str) -> type[Backend]:
    """The class of the backend called ``name`` (params ``synthesize.backend``)."""
    try:
        return BACKENDS[name]()
    except KeyError:
        raise HybridscoreError(
            f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}"
        ) from None


def make_backend(params: SynthesizeParams, cache_dir: str | Path) -> Backend:
    """The backend ``params.backend`` names, configured from params (and the environment)."""
    return backend_class(params.backend).from_params(params, Path(cache_dir))


def min_fill(params: SynthesizeParams) -> float:
    """params ``synthesize.min_fill``, or the backend's ``default_min_fill`` when it is null."""
    if params.min_fill is not None:
        return params.min_fill
    return backend_class(params.backend).default_min_fill


def price_table(params: SynthesizeParams) -> PriceTable | None:
    """USD prices for ``params.model`` (None: not in the table); unbilled generation is free."""
    backend = backend_class(params.backend)
    if not backend.billed:
        return PriceTable()
    if params.model not in params.prices:
        return None
    price_in, price_out = params.prices[params.model]
    discount = params.batch_discount if backend.batch_priced else 1.0
    return PriceTable(price_in, price_out, discount)
