"""Retries: exponential backoff, full jitter, honouring ``Retry-After`` (no prompt logic)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from hybridscore.params import SynthesizeParams

T = TypeVar("T")


class TransientError(Exception):
    """A failure worth retrying; ``retry_after`` (seconds) comes from the server when it says."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RetriesExhausted(Exception):
    def __init__(self, message: str, retries: int) -> None:
        super().__init__(message)
        self.retries = retries


def parse_retry_after(headers: object) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` (seconds; HTTP dates ignored)."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            continue
        if 0 <= seconds <= 600:
            return seconds
    return None


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0

    @classmethod
    def from_params(cls, params: SynthesizeParams) -> RetryPolicy:
        """The transport retries params ``synthesize`` ask for."""
        return cls(params.max_retries, params.backoff_base_s, params.backoff_max_s)

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Full-jitter backoff; a server's Retry-After is a floor, never shortened."""
        backoff = rng.uniform(0, min(self.max_delay, self.base_delay * 2**retry))
        return max(backoff, retry_after) if retry_after is not None else backoff


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    on_retry: Callable[[TransientError], None] | None = None,
    rng: random.Random | None = None,
) -> tuple[T, int]:
    """Run ``call`` until it succeeds; return (result, retries). Non-transient errors propagate."""
    rng = rng or random.Random()
    for retry in range(policy.max_retries + 1):
        try:
            return await call(), retry
        except TransientError as exc:
            if retry == policy.max_retries:
                raise RetriesExhausted(f"{exc} (gave up after {retry} retries)", retry) from exc
            if on_retry is not None:
                on_retry(exc)
            await asyncio.sleep(policy.delay(retry, exc.retry_after, rng))
    raise AssertionError("unreachable")
