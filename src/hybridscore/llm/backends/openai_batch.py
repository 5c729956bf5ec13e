"""The ``openai-batch`` backend: the same requests through the Batch API (half the price).

Submit a JSONL file, poll with progress, fetch the output. The batch id is written durably to
``<cache>/batches/`` right after submission, so a restarted run polls the batch it already
paid for instead of submitting again.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import openai

from hybridscore.errors import HybridscoreError
from hybridscore.llm.backends.openai_chat import completion_from, make_client, request_body
from hybridscore.llm.retry import RetriesExhausted, RetryPolicy, TransientError, call_with_retries
from hybridscore.llm.types import Completion, Request

ENDPOINT = "/v1/chat/completions"
FINAL = {"completed", "failed", "expired", "cancelled"}


class OpenAIBatchBackend:
    """All pending requests of one attempt go into one batch (split at ``max_batch``)."""

    name = "openai-batch"
    concurrency = 1

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None,
        timeout: float,
        retry: RetryPolicy,
        state_dir: str | os.PathLike[str],
        poll_interval: float = 30.0,
        max_batch: int = 50_000,
        max_wait: float = 26 * 3600,
    ) -> None:
        self.model = model
        self.retry = retry
        self.max_batch = max_batch
        self.poll_interval = poll_interval
        self.max_wait = max_wait
        self.state_dir = Path(state_dir)
        self._base_url = base_url
        self._timeout = timeout
        self._client: openai.AsyncOpenAI | None = make_client(base_url, timeout)  # fail fast

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self._client = make_client(self._base_url, self._timeout)
        return self._client

    # ------------------------------------------------------------------ durable batch records
    def _records(self) -> list[dict[str, Any]]:
        records = []
        for path in sorted(self.state_dir.glob("*.json")):
            try:
                records.append(json.loads(path.read_text(encoding="utf-8")))
            except ValueError:
                continue  # torn by a crash before the id was acknowledged
        return records

    def _save_record(self, record: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / f"{record['submitted']}-{record['batch_id']}.json"
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            json.dump(record, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    # ------------------------------------------------------------------ API calls with retries
    async def _call(self, make_call: Any) -> Any:
        async def once() -> Any:
            try:
                return await make_call()
            except openai.AuthenticationError as exc:
                raise HybridscoreError(
                    f"the server refused the API key (HTTP {exc.status_code})"
                ) from None
            except (
                openai.APIConnectionError,
                openai.InternalServerError,
                openai.RateLimitError,
            ) as exc:
                raise TransientError(type(exc).__name__) from exc

        result, _ = await call_with_retries(once, self.retry)
        return result

    async def _submit(self, requests: list[Request], attempt: int) -> dict[str, Any]:
        lines = [
            json.dumps(
                {
                    "custom_id": r.key,
                    "method": "POST",
                    "url": ENDPOINT,
                    "body": request_body(r, self.model, attempt),
                }
            )
            for r in requests
        ]
        payload = ("\n".join(lines) + "\n").encode("utf-8")
        upload = await self._call(
            lambda: self.client.files.create(
                file=("requests.jsonl", io.BytesIO(payload)), purpose="batch"
            )
        )
        batch = await self._call(
            lambda: self.client.batches.create(
                input_file_id=upload.id, endpoint=ENDPOINT, completion_window="24h"
            )
        )
        record = {
            "batch_id": batch.id,
            "submitted": time.strftime("%Y%m%dT%H%M%S", time.gmtime()),
            "attempt": attempt,
            "model": self.model,
            "keys": [r.key for r in requests],
        }
        self._save_record(record)
        print(f"openai-batch: submitted {batch.id} ({len(requests)} requests)", file=sys.stderr)
        return record

    async def _wait(self, batch_id: str) -> Any:
        start = time.monotonic()
        while True:
            batch = await self._call(lambda: self.client.batches.retrieve(batch_id))
            counts = batch.request_counts
            done = f"{counts.completed + counts.failed}/{counts.total}" if counts else "?"
            print(f"openai-batch: {batch_id} {batch.status} {done}", file=sys.stderr)
            if batch.status in FINAL:
                return batch
            if time.monotonic() - start > self.max_wait:
                raise HybridscoreError(
                    f"batch {batch_id} not finished after {self.max_wait:.0f} s; rerun later"
                )
            await asyncio.sleep(self.poll_interval)

    async def _fetch(self, batch: Any) -> dict[str, Completion]:
        out: dict[str, Completion] = {}
        for file_id, ok in ((batch.output_file_id, True), (batch.error_file_id, False)):
            if not file_id:
                continue
            content = await self._call(lambda file_id=file_id: self.client.files.content(file_id))
            for line in content.text.splitlines():
                try:
                    item = json.loads(line)
                    key = item["custom_id"]
                except (ValueError, KeyError, TypeError):
                    continue
                response = item.get("response") or {}
                if ok and response.get("status_code") == 200 and not item.get("error"):
                    try:
                        out[key] = completion_from(response.get("body") or {})
                    except (AttributeError, TypeError):
                        out[key] = Completion(error="bad_response")
                else:
                    status = response.get("status_code") or "error"
                    out.setdefault(key, Completion(error=f"batch_item_{status}"))
        return out

    async def complete(self, requests: list[Request], attempt: int) -> list[Completion]:
        wanted = {r.key for r in requests}
        found: dict[str, Completion] = {}
        errors: dict[str, Completion] = {}

        async def absorb(batch_id: str, keys: list[str]) -> None:
            fetched = await self._fetch(await self._wait(batch_id))
            for key in keys:
                completion = fetched.get(key)
                if completion is None or key in found:
                    continue
                if completion.error is None:
                    found[key] = completion
                    errors.pop(key, None)
                else:
                    errors[key] = completion

        try:
            # resume: batches this cache already submitted for these requests at this attempt
            for record in self._records():
                keys = [k for k in record["keys"] if k in wanted and k not in found]
                if keys and record.get("attempt") == attempt and record.get("model") == self.model:
                    await absorb(record["batch_id"], keys)
            for _ in range(self.retry.max_retries + 1):  # failed items are resubmitted
                missing = [r for r in requests if r.key not in found]
                if not missing:
                    break
                record = await self._submit(missing, attempt)
                await absorb(record["batch_id"], record["keys"])
        except RetriesExhausted as exc:
            return [found.get(r.key) or Completion(error=f"batch: {exc}") for r in requests]
        return [
            found.get(r.key) or errors.get(r.key) or Completion(error="batch_item_missing")
            for r in requests
        ]

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
