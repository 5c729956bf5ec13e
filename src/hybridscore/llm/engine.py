"""The request loop: cache first, then the backend with a concurrency bound, re-asks, budget.

Prompt building stays in the stage, transport and retries in the backends; this module only
decides which requests to send, keeps every accepted reply durably, and counts what happened.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from hybridscore.llm.cache import ReplyCache
from hybridscore.llm.tokens import PriceTable, estimate_prompt_tokens
from hybridscore.llm.types import Backend, Completion, Request, Usage

# Decide whether a reply's choices are usable: None = keep, else the rejection reason.
Judge = Callable[[Request, list[str]], str | None]
REJECTED = "rejected_after_reasks"


def rejected_key(key: str, asks: int) -> str:
    """The cache key of a request's last reply after ``asks`` asks that were all rejected: it
    was paid for, so a rerun with as many re-asks fails it again without asking."""
    return f"{REJECTED}-{asks}-{key}"


def asked_before(cache: ReplyCache, key: str, max_reasks: int) -> tuple[int, str]:
    """How often ``key`` was asked, all rejected, in earlier runs (up to ``max_reasks`` + 1;
    0: never), and the last reason."""
    for asks in range(max_reasks + 1, 0, -1):
        record = cache.get(rejected_key(key, asks))
        if record is not None:
            return asks, str(record.get("reason", ""))
    return 0, ""


@dataclass(frozen=True)
class Budget:
    """Hard caps; a request is only sent if its worst case still fits under both."""

    max_usd: float | None = None
    max_tokens: int | None = None


@dataclass
class EngineStats:
    requests_sent: int = 0
    cache_hits: int = 0
    retries: int = 0
    reasks: int = 0
    skipped_for_budget: int = 0
    rejected_replies: Counter[str] = field(default_factory=Counter)
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    budget_exhausted: bool = False
    retry_reasons: Counter[str] = field(default_factory=Counter)
    # request key → (kind, message) of its last failure; a later success removes it, so
    # these are the requests that finally failed, not every failed attempt
    failures: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        """Requests that finally failed (a later round's success does not count)."""
        return len(self.failures)

    @property
    def errors(self) -> Counter[str]:
        """Final failures by kind."""
        return Counter(kind for kind, _ in self.failures.values())

    @property
    def last_error(self) -> str:
        """The message of the most recent final failure ("" when none failed)."""
        return next(reversed(self.failures.values()))[1] if self.failures else ""

    def fail(self, key: str, kind: str, message: str) -> None:
        self.failures.pop(key, None)  # re-insert: the last entry is the most recent
        self.failures[key] = (kind or "error", message or kind or "error (no reason given)")

    def fail_rejected(self, key: str, reason: str, asks: int) -> None:
        """``key`` failed: all its ``asks`` were rejected, the last for ``reason``."""
        self.fail(key, REJECTED, f"{REJECTED}: {reason} ({asks - 1} re-asks)")

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests_sent": self.requests_sent,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "retries_by_reason": dict(sorted(self.retry_reasons.items())),
            "reasks": self.reasks,
            "failed_requests": self.failed,
            "failures_by_reason": dict(sorted(self.errors.items())),
            "skipped_for_budget": self.skipped_for_budget,
            "rejected_replies": dict(sorted(self.rejected_replies.items())),
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "budget_exhausted": self.budget_exhausted,
        }


class Engine:
    """Run requests through ``cache`` and ``backend``; return key → accepted choice texts."""

    def __init__(
        self,
        backend: Backend,
        cache: ReplyCache,
        *,
        max_reasks: int = 2,
        price: PriceTable | None = None,
        budget: Budget | None = None,
        progress: bool = True,
    ) -> None:
        self.backend = backend
        self.cache = cache
        self.max_reasks = max_reasks
        self.price = price or PriceTable()
        self.budget = budget or Budget()
        self.progress = progress
        self.stats = EngineStats()
        self._reserved_usd = 0.0
        self._reserved_tokens = 0

    def run(self, requests: list[Request], judge: Judge) -> dict[str, list[str]]:
        """Key → choice texts of an accepted reply (cached or new); failed requests are absent."""
        return asyncio.run(self.arun(requests, judge))

    async def arun(self, requests: list[Request], judge: Judge) -> dict[str, list[str]]:
        results: dict[str, list[str]] = {}
        todo: dict[str, tuple[Request, int]] = {}
        for request in requests:
            record = self.cache.get(request.key)
            if record is not None:
                self.stats.cache_hits += 1
                results[request.key] = record["choices"]
                continue
            asks, reason = asked_before(self.cache, request.key, self.max_reasks)
            if asks > self.max_reasks:  # rejected as often as this run would re-ask
                self.stats.cache_hits += 1
                self.stats.fail_rejected(request.key, reason, asks)
            else:  # new, or fewer re-asks than now allowed: go on from the next ask
                todo.setdefault(request.key, (request, asks))
        if todo:
            reasons = getattr(self.backend, "retry_reasons", Counter())
            before = Counter(reasons)
            try:
                await self._send_all(list(todo.values()), results, judge)
            finally:
                await self.backend.aclose()
                self.stats.retry_reasons.update(reasons - before)
        return results

    # ------------------------------------------------------------------ budget
    def _worst_case(self, chunk: list[Request]) -> tuple[float, int]:
        usd = sum(self.price.worst_case(r) for r in chunk)
        tokens = sum(estimate_prompt_tokens(r) + r.max_tokens * r.n for r in chunk)
        return usd, tokens

    def _fits(self, usd: float, tokens: int) -> bool:
        spent_tokens = self.stats.usage.prompt_tokens + self.stats.usage.completion_tokens
        if self.budget.max_usd is not None and (
            self.stats.cost_usd + self._reserved_usd + usd > self.budget.max_usd
        ):
            return False
        return self.budget.max_tokens is None or (
            spent_tokens + self._reserved_tokens + tokens <= self.budget.max_tokens
        )

    # ------------------------------------------------------------------ the loop
    async def _send_all(
        self, todo: list[tuple[Request, int]], results: dict[str, list[str]], judge: Judge
    ) -> None:
        queue: asyncio.Queue[tuple[Request, int]] = asyncio.Queue()
        for request, attempt in todo:
            queue.put_nowait((request, attempt))
        outstanding = len(todo)
        done = asyncio.Event()
        bar = tqdm(
            total=len(todo),
            desc="synthesize",
            unit="req",
            file=sys.stderr,
            disable=not self.progress,
            mininterval=0.5,
            dynamic_ncols=True,
        )

        def finish(count: int = 1) -> None:
            nonlocal outstanding
            outstanding -= count
            bar.update(count)
            if outstanding == 0:
                done.set()

        def handle(request: Request, attempt: int, completion: Completion) -> None:
            self.stats.retries += completion.retries
            self.stats.usage.add(completion.usage)
            self.stats.cost_usd += self.price.usage_cost(completion.usage)
            if completion.error is not None:
                self.stats.fail(request.key, completion.error.split(":")[0], completion.error)
                finish()
                return
            reason = judge(request, completion.choices)
            record = {
                "choices": completion.choices,
                "label": request.label,
                "backend": self.backend.name,
                "model": self.backend.model,
                "attempts": attempt + 1,
                "usage": [completion.usage.prompt_tokens, completion.usage.completion_tokens],
            }
            if reason is None:
                self.stats.failures.pop(request.key, None)
                self.cache.put(request.key, record)
                results[request.key] = completion.choices
                finish()
            elif attempt < self.max_reasks:
                self.stats.rejected_replies[reason] += 1
                self.stats.reasks += 1
                queue.put_nowait((request, attempt + 1))
            else:
                self.stats.rejected_replies[reason] += 1
                self.cache.put(rejected_key(request.key, attempt + 1), record | {"reason": reason})
                self.stats.fail_rejected(request.key, reason, attempt + 1)
                finish()

        async def worker() -> None:
            while True:
                chunk = [await queue.get()]
                while len(chunk) < self.backend.max_batch and not queue.empty():
                    chunk.append(queue.get_nowait())
                # a chunk holds one attempt number per call (Batch API files are per attempt)
                attempt = chunk[0][1]
                for item in [c for c in chunk if c[1] != attempt]:
                    queue.put_nowait(item)
                chunk = [c for c in chunk if c[1] == attempt]
                requests = [request for request, _ in chunk]
                usd, tokens = self._worst_case(requests)
                if self.stats.budget_exhausted or not self._fits(usd, tokens):
                    self.stats.budget_exhausted = True
                    self.stats.skipped_for_budget += len(chunk)
                    finish(len(chunk))
                    continue
                self._reserved_usd += usd
                self._reserved_tokens += tokens
                self.stats.requests_sent += len(requests)
                try:
                    completions = await self.backend.complete(requests, attempt)
                finally:
                    self._reserved_usd -= usd
                    self._reserved_tokens -= tokens
                for request, completion in zip(requests, completions, strict=True):
                    handle(request, attempt, completion)
                bar.set_postfix(cost=f"${self.stats.cost_usd:.4f}", refresh=False)

        workers = [asyncio.create_task(worker()) for _ in range(max(1, self.backend.concurrency))]
        waiter = asyncio.create_task(done.wait())
        try:
            finished, _ = await asyncio.wait(
                [waiter, *workers], return_when=asyncio.FIRST_COMPLETED
            )
            for task in finished:
                if task is not waiter:
                    task.result()  # a worker died: re-raise its error (e.g. bad API key)
        finally:
            for task in [waiter, *workers]:
                task.cancel()
            await asyncio.gather(waiter, *workers, return_exceptions=True)
            bar.close()
