"""The LLM client layer: one generator interface, a backend registry, durable caches, retries.

``make_backend`` builds the backend params ask for; ``Engine`` runs requests through the
cache and the backend. What to ask and how to judge replies is in ``hybridscore.synth``.
"""

from __future__ import annotations

from hybridscore.llm.backends import BACKENDS, backend_class, make_backend, min_fill, price_table
from hybridscore.llm.cache import ReplyCache, SharedReplies
from hybridscore.llm.engine import Budget, Engine, EngineStats, asked_before
from hybridscore.llm.retry import RetryPolicy
from hybridscore.llm.tokens import PriceTable
from hybridscore.llm.types import Backend, Completion, Request, Usage, request_key

__all__ = [
    "BACKENDS",
    "Backend",
    "Budget",
    "Completion",
    "Engine",
    "EngineStats",
    "PriceTable",
    "ReplyCache",
    "Request",
    "RetryPolicy",
    "SharedReplies",
    "Usage",
    "asked_before",
    "backend_class",
    "make_backend",
    "min_fill",
    "price_table",
    "request_key",
]
