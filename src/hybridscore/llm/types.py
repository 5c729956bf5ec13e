"""The small vocabulary every backend speaks: a request, a completion, token usage."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from hybridscore.params import SynthesizeParams


def request_key(**fields: Any) -> str:
    """sha256 over everything that determines a request (canonical JSON, sorted keys)."""
    blob = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Request:
    """One call to the generator: ``n`` choices, each asked for ``count`` responses."""

    key: str
    messages: tuple[tuple[str, str], ...]  # (role, content)
    temperature: float
    max_tokens: int
    seed: int
    n: int = 1
    count: int = 1
    label: str | None = (
        None  # the label the prompt asked for (replies stating another are rejected)
    )
    schema: dict[str, Any] | None = None  # JSON schema for Structured Outputs (None: free text)
    schema_name: str = "reply"
    prefill: str = ""  # the reply's start, continued by the model (local backend only)

    def chat_messages(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]

    def seed_for(self, attempt: int) -> int:
        """The sampling seed of a (re-)ask (the same seed could repeat a bad reply)."""
        return (self.seed + 1_000_003 * attempt) % (2**31 - 1)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: Usage) -> None:
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


@dataclass
class Completion:
    """A backend's answer to one request: raw choice texts, or an error after retries."""

    choices: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    error: str | None = None
    retries: int = 0


class Backend(Protocol):
    """A generator backend. ``complete`` never raises for one bad request: it returns an error.

    ``max_batch`` requests are handed over per call and ``concurrency`` calls run at once
    (OpenAI: 1 request, many calls; local model: a batch, one call; Batch API: everything).
    What a backend supports is declared on its class: ``billed`` (a paid, remote service:
    prices apply), ``batch_priced`` (billed at the Batch API discount) and
    ``structured_outputs`` (it enforces a JSON schema on replies, so prompts ask for JSON),
    ``default_min_fill`` (the share of the asked rows a run must produce when params
    ``synthesize.min_fill`` is null), ``prefill`` (it continues a reply that a request's
    ``prefill`` starts, so a template may have a [reply] section).
    """

    name: str
    model: str
    max_batch: int
    concurrency: int
    billed: ClassVar[bool]
    batch_priced: ClassVar[bool]
    structured_outputs: ClassVar[bool]
    default_min_fill: ClassVar[float]
    prefill: ClassVar[bool]

    @classmethod
    def from_params(cls, params: SynthesizeParams, cache_dir: Path) -> Backend: ...

    async def complete(self, requests: list[Request], attempt: int) -> list[Completion]: ...

    async def aclose(self) -> None: ...
