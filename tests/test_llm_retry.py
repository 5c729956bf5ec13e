"""Retries: backoff with jitter, Retry-After as a floor, giving up."""

from __future__ import annotations

import asyncio
import random

import pytest

from hybridscore.llm.retry import RetryPolicy, TransientError, call_with_retries, parse_retry_after


def test_retry_after_is_a_floor_and_backoff_grows() -> None:
    policy = RetryPolicy(max_retries=5, base_delay=0.1, max_delay=10)
    rng = random.Random(0)
    assert all(policy.delay(0, 2.5, rng) >= 2.5 for _ in range(50))
    assert max(policy.delay(4, None, rng) for _ in range(200)) > 0.8
    assert max(policy.delay(0, None, rng) for _ in range(200)) <= 0.1
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None


def test_call_with_retries_counts_and_gives_up() -> None:
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("http_503", retry_after=0.0)
        return "ok"

    policy = RetryPolicy(max_retries=3, base_delay=0.0)
    assert asyncio.run(call_with_retries(flaky, policy)) == ("ok", 2)
    calls.clear()
    with pytest.raises(Exception, match="gave up after 1 retries"):
        asyncio.run(call_with_retries(flaky, RetryPolicy(max_retries=1, base_delay=0.0)))
