"""What the two OpenAI backends share: the SDK client, its setup and its lifetime."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import openai

from hybridscore.errors import HybridscoreError
from hybridscore.llm.retry import RetryPolicy

if TYPE_CHECKING:
    from hybridscore.params import SynthesizeParams


def make_client(base_url: str | None, timeout: float) -> openai.AsyncOpenAI:
    """An SDK client with its own retries off (ours count them); key only from the env."""
    base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
    api_key = os.environ.get("OPENAI_API_KEY")
    if not api_key:
        if base_url is None:
            raise HybridscoreError(
                "backend openai needs OPENAI_API_KEY in the environment "
                "(for a local server without keys, set base_url and any dummy key)"
            )
        api_key = "EMPTY"  # vLLM/Ollama convention for servers that check no key
    return openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)


class OpenAIClientBackend:
    """Base of the OpenAI backends: billed, Structured Outputs, one SDK client per event loop."""

    billed = True
    batch_priced = False
    structured_outputs = True
    default_min_fill = 1.0  # paid rows: a short run is an error, and a rerun tops it up
    prefill = False  # the Chat Completions API has no reply prefill: a [reply] is refused

    def __init__(
        self, model: str, *, base_url: str | None, timeout: float, retry: RetryPolicy
    ) -> None:
        self.model = model
        self.retry = retry
        self._base_url = base_url
        self._timeout = timeout
        self._client: openai.AsyncOpenAI | None = make_client(base_url, timeout)  # fail fast

    @staticmethod
    def client_options(params: SynthesizeParams) -> dict[str, Any]:
        """The constructor's client keywords from params (``base_url``, ``timeout``, ``retry``)."""
        return {
            "base_url": params.base_url,
            "timeout": params.timeout_s,
            "retry": RetryPolicy.from_params(params),
        }

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The SDK client; a new one per event loop (``aclose`` ends the old one)."""
        if self._client is None:
            self._client = make_client(self._base_url, self._timeout)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
