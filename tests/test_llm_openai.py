"""The openai backend through the real SDK against the local fault-injecting server."""

from __future__ import annotations

import json

import pytest
from fakes.openai_server import (
    CONTENT_FAULTS,
    HTTP_FAULTS,
    FakeOpenAIServer,
    Faults,
    body_key,
    schema_requests,
)

from hybridscore.errors import HybridscoreError
from hybridscore.llm import Engine, ReplyCache, Request
from hybridscore.llm.backends.openai_chat import OpenAIBackend, request_body
from hybridscore.llm.retry import RetryPolicy
from hybridscore.synth.validate import Rejected, parse_reply

LABELS = ("low", "high")


def _requests(count: int) -> list[Request]:
    return schema_requests(count, LABELS, answers=2, max_tokens=200, prompt="write answers")


def _judge(request: Request, choices: list[str]) -> str | None:
    try:
        for choice in choices:
            parse_reply(request, choice)
    except Rejected as exc:
        return exc.reason
    return None


# Far above a normal reply's time even on a CPU busy with trainings (3 s was not: a starved
# server once answered after it, the client retried, and a key was served twice), so only
# injected timeouts trigger it.
CLIENT_TIMEOUT_S = 8.0


def _engine(server: FakeOpenAIServer, cache: ReplyCache, **kwargs) -> Engine:
    backend = OpenAIBackend(
        "gpt-4o",
        base_url=server.base_url,
        concurrency=kwargs.pop("concurrency", 32),
        timeout=kwargs.pop("timeout", CLIENT_TIMEOUT_S),
        retry=RetryPolicy(12, 0.005, 0.05),
    )
    return Engine(backend, cache, max_reasks=10, progress=False, **kwargs)


def served_key(request: Request, ok_by_key: dict[str, int], max_reasks: int = 10) -> str:
    """The server's key of the one ask of ``request`` it answered well (each ask has a seed)."""
    keys = {body_key(request_body(request, "gpt-4o", a)) for a in range(max_reasks + 1)}
    (key,) = keys & set(ok_by_key)
    return key


@pytest.mark.slow
def test_a_thousand_requests_under_30_percent_faults(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    requests = _requests(1000)
    stall = CLIENT_TIMEOUT_S + 0.5  # an injected timeout: the server stalls past the client's
    with FakeOpenAIServer(
        latency=0.002, faults=Faults.spread(0.3, 0.01), timeout_sleep=stall, seed=3
    ) as server:
        with ReplyCache(tmp_path) as cache:
            engine = _engine(server, cache)
            results = engine.run(requests, _judge)
        stats, seen = engine.stats, server.stats

    # every request answered exactly once, with exactly what the server sent as a valid reply
    assert len(results) == 1000 and stats.failed == 0
    served = {r.key: served_key(r, seen.ok_by_key) for r in requests}
    assert set(seen.ok_by_key) == set(served.values()) and len(seen.ok_by_key) == 1000
    assert max(seen.ok_by_key.values()) == 1
    for request in requests:
        responses = [t for c in results[request.key] for t in parse_reply(request, c)]
        assert responses == seen.texts_by_key[served[request.key]]
        assert all(t.startswith(f"{request.label} answer ") for t in responses)
    # the faults really happened, and every one of them is counted
    http_faults = sum(seen.outcomes[k] for k in HTTP_FAULTS)
    content_faults = sum(seen.outcomes[k] for k in CONTENT_FAULTS)
    assert (http_faults + content_faults) / seen.chat_requests > 0.2
    assert all(seen.outcomes[k] > 0 for k in HTTP_FAULTS + CONTENT_FAULTS)
    # each HTTP fault costs one retry; a pooled connection the server closed may cost more
    assert stats.retries >= http_faults, (stats.retry_reasons, seen.outcomes)
    assert stats.retry_reasons["http_429"] == seen.outcomes["rate_limit"]
    assert (
        stats.retry_reasons["http_500"] + stats.retry_reasons["http_503"]
        == seen.outcomes["server_error"]
    )
    assert stats.retry_reasons["timeout"] >= seen.outcomes["timeout"]
    assert sum(stats.rejected_replies.values()) == content_faults == stats.reasks
    assert stats.requests_sent == 1000 + stats.reasks
    # and the durable cache holds exactly the accepted replies
    reopened = ReplyCache(tmp_path)
    assert len(reopened) == 1000
    assert all(reopened.get(r.key)["choices"] == results[r.key] for r in requests)


def test_retry_after_on_429_is_honoured(tmp_path, monkeypatch) -> None:
    import time

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeOpenAIServer(faults=Faults(rate_limit=1.0, retry_after=0.3), seed=1) as server:
        cache = ReplyCache(tmp_path)
        backend = OpenAIBackend(
            "gpt-4o",
            base_url=server.base_url,
            concurrency=1,
            timeout=2,
            retry=RetryPolicy(2, 0.0, 0.0),
        )
        started = time.monotonic()
        engine = Engine(backend, cache, progress=False)
        results = engine.run(_requests(1), _judge)
        elapsed = time.monotonic() - started
    # base delay 0: without Retry-After the two retries would not wait at all
    assert elapsed >= 0.6 and results == {} and engine.stats.failed == 1
    assert server.stats.outcomes["rate_limit"] == 3 and engine.stats.retries == 2


def test_a_refused_key_stops_with_one_message_that_does_not_contain_it(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-SECRET123")
    with FakeOpenAIServer(api_key="sk-right") as server:
        engine = _engine(server, ReplyCache(tmp_path), concurrency=2)
        with pytest.raises(HybridscoreError, match="refused the API key") as info:
            engine.run(_requests(4), _judge)
    assert "SECRET123" not in str(info.value)


def test_a_missing_key_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(HybridscoreError, match="OPENAI_API_KEY"):
        OpenAIBackend("gpt-4o", base_url=None, concurrency=1, timeout=1, retry=RetryPolicy())


def test_the_request_body_uses_structured_outputs_and_n(tmp_path, monkeypatch) -> None:
    request = _requests(1)[0]
    body = request_body(request, "gpt-4o", attempt=1)
    assert body["response_format"]["json_schema"]["strict"] is True
    assert body["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"] == [
        "low"
    ]
    assert body["n"] == 1 and body["seed"] != request.seed  # a re-ask samples anew
    json.dumps(body)  # serialisable as sent
