"""The ``openai`` backend: Chat Completions through the official SDK, async, with retries.

Works with OpenAI (GPT-4o) and any OpenAI-compatible server (vLLM, Ollama, Azure-style
proxies) through ``base_url``. The key is read from ``OPENAI_API_KEY`` only and never logged.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai

from hybridscore.errors import HybridscoreError
from hybridscore.llm.backends.openai_client import OpenAIClientBackend
from hybridscore.llm.retry import (
    RetriesExhausted,
    RetryPolicy,
    TransientError,
    call_with_retries,
    parse_retry_after,
)
from hybridscore.llm.types import Completion, Request, Usage

if TYPE_CHECKING:
    from hybridscore.params import SynthesizeParams


def request_body(request: Request, model: str, attempt: int) -> dict[str, Any]:
    """The Chat Completions body for one (re-)ask of ``request``."""
    body: dict[str, Any] = {
        "model": model,
        "messages": request.chat_messages(),
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "n": request.n,
        "seed": request.seed_for(attempt),
    }
    if request.schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": request.schema_name, "strict": True, "schema": request.schema},
        }
    return body


def translate_error(exc: Exception) -> Exception:
    """SDK/transport errors → ``TransientError`` (retry) or a permanent error."""
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return HybridscoreError(
            f"the server refused the API key (HTTP {exc.status_code}); check OPENAI_API_KEY"
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status == 429 or status == 408 or status == 409 or status >= 500:
            return TransientError(f"http_{status}", parse_retry_after(exc.response.headers))
        return RuntimeError(f"http_{status}: {exc.message[:200]}")
    if isinstance(exc, openai.APITimeoutError):
        return TransientError("timeout")
    if isinstance(exc, openai.APIConnectionError):
        return TransientError("connection")
    if isinstance(exc, openai.APIResponseValidationError | ValueError):
        return TransientError("bad_response")  # e.g. a truncated or non-JSON HTTP body
    return exc


def completion_from(response: Any) -> Completion:
    """Choice texts and usage of a Chat Completions response (SDK object or plain dict)."""
    data = response if isinstance(response, dict) else response.model_dump()
    choices = [
        (choice.get("message") or {}).get("content") or "" for choice in data.get("choices") or []
    ]
    usage = data.get("usage") or {}
    return Completion(
        choices=choices,
        usage=Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0),
    )


class OpenAIBackend(OpenAIClientBackend):
    """One request per call, ``concurrency`` calls in flight."""

    name = "openai"
    max_batch = 1

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None,
        concurrency: int,
        timeout: float,
        retry: RetryPolicy,
    ) -> None:
        super().__init__(model, base_url=base_url, timeout=timeout, retry=retry)
        self.concurrency = concurrency
        self._rng = random.Random()
        self.retry_reasons: Counter[str] = Counter()

    @classmethod
    def from_params(cls, params: SynthesizeParams, cache_dir: Path) -> OpenAIBackend:
        return cls(params.model, concurrency=params.concurrency, **cls.client_options(params))

    async def _create(self, request: Request, attempt: int) -> Completion:
        try:
            body = request_body(request, self.model, attempt)
            # the body goes as is and the reply is read as plain JSON: the SDK's per-field
            # transforms and pydantic models cost milliseconds of CPU per request, which
            # caps throughput at high concurrency
            raw = await self.client.chat.completions.with_raw_response.create(
                model=body.pop("model"),
                messages=body.pop("messages"),
                extra_body=body,
            )
            completion = completion_from(json.loads(raw.text))
        except Exception as exc:
            translated = translate_error(exc)
            if translated is exc:
                raise
            raise translated from exc
        if not completion.choices:
            raise TransientError("bad_response")
        return completion

    async def complete(self, requests: list[Request], attempt: int) -> list[Completion]:
        out = []
        for request in requests:
            try:
                completion, retries = await call_with_retries(
                    lambda request=request: self._create(request, attempt),
                    self.retry,
                    on_retry=lambda exc: self.retry_reasons.update([str(exc)]),
                    rng=self._rng,
                )
                completion.retries = retries
            except RetriesExhausted as exc:
                completion = Completion(error=str(exc), retries=exc.retries)
            except RuntimeError as exc:  # a permanent HTTP error for this request only
                completion = Completion(error=str(exc))
            out.append(completion)
        return out
