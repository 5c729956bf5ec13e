"""The LLM layer: one generator interface, three backends, a durable cache, reply validation.

``make_backend`` builds the backend params ask for; ``Engine`` runs requests through the
cache and the backend. Prompt logic lives in the stage (``hybridscore.synthesize``).
"""

from __future__ import annotations

from pathlib import Path

from hybridscore.llm.cache import ReplyCache
from hybridscore.llm.engine import Budget, Engine, EngineStats
from hybridscore.llm.retry import RetryPolicy
from hybridscore.llm.tokens import PriceTable
from hybridscore.llm.types import Backend, Completion, Request, Usage, request_key
from hybridscore.params import SynthesizeParams

__all__ = [
    "Backend",
    "Budget",
    "Completion",
    "Engine",
    "EngineStats",
    "PriceTable",
    "ReplyCache",
    "Request",
    "Usage",
    "make_backend",
    "price_table",
    "request_key",
]


def make_backend(params: SynthesizeParams, cache_dir: str | Path) -> Backend:
    """The backend ``params.backend`` names, configured from params (and the environment)."""
    retry = RetryPolicy(params.max_retries, params.backoff_base_s, params.backoff_max_s)
    if params.backend == "local":
        from hybridscore.llm.backends.local import LocalBackend

        return LocalBackend(params.model, batch_size=params.batch_size, threads=params.cpu_threads)
    if params.backend == "openai":
        from hybridscore.llm.backends.openai_chat import OpenAIBackend

        return OpenAIBackend(
            params.model,
            base_url=params.base_url,
            concurrency=params.concurrency,
            timeout=params.timeout_s,
            retry=retry,
        )
    from hybridscore.llm.backends.openai_batch import OpenAIBatchBackend

    return OpenAIBatchBackend(
        params.model,
        base_url=params.base_url,
        timeout=params.timeout_s,
        retry=retry,
        state_dir=Path(cache_dir) / "batches",
        poll_interval=params.batch_poll_s,
    )


def price_table(params: SynthesizeParams) -> PriceTable | None:
    """USD prices for ``params.model`` (None: not in the table); local generation is free."""
    if params.backend == "local":
        return PriceTable()
    if params.model not in params.prices:
        return None
    price_in, price_out = params.prices[params.model]
    discount = params.batch_discount if params.backend == "openai-batch" else 1.0
    return PriceTable(price_in, price_out, discount)
