"""The ``openai-batch`` backend: the same requests through the Batch API (half the price).

Submit a JSONL file, poll with progress, fetch the output. The batch id is written durably to
``<cache>/batches/`` right after submission, so a restarted run polls the batch it already
paid for instead of submitting again.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai

from hybridscore.errors import HybridscoreError
from hybridscore.llm.backends.openai_chat import completion_from, request_body
from hybridscore.llm.backends.openai_client import OpenAIClientBackend
from hybridscore.llm.retry import RetriesExhausted, RetryPolicy, TransientError, call_with_retries
from hybridscore.llm.types import Completion, Request

if TYPE_CHECKING:
    from hybridscore.params import SynthesizeParams

ENDPOINT = "/v1/chat/completions"
FINAL = {"completed", "failed", "expired", "cancelled"}
SERVER_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # what OpenAI's batch and file ids look like


def checked_id(kind: str, value: object) -> str:
    """A batch or file id from the server, refused unless it is a plain token.

    Ids go into URLs only (file names are derived from our own request keys), but a path
    segment such as ``../x`` or an empty id would still address the wrong resource.
    """
    if isinstance(value, str) and SERVER_ID.fullmatch(value):
        return value
    text = repr(value)
    shown = text if len(text) <= 60 else f"{text[:60]}... ({len(text)} chars)"
    raise HybridscoreError(
        f"the Batch API server returned an invalid {kind} id {shown} (expected 1-128 of "
        "A-Z a-z 0-9 _ -); refusing it. Check synthesize.base_url points at an OpenAI-compatible "
        "Batch API"
    )


class OpenAIBatchBackend(OpenAIClientBackend):
    """All pending requests of one attempt go into one batch (split at ``max_batch``)."""

    name = "openai-batch"
    concurrency = 1
    batch_priced = True

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
        super().__init__(model, base_url=base_url, timeout=timeout, retry=retry)
        self.max_batch = max_batch
        self.poll_interval = poll_interval
        self.max_wait = max_wait
        self.state_dir = Path(state_dir)

    @classmethod
    def from_params(cls, params: SynthesizeParams, cache_dir: Path) -> OpenAIBatchBackend:
        """Batch records go to ``<cache_dir>/batches`` (resume after a restart)."""
        return cls(
            params.model,
            state_dir=cache_dir / "batches",
            poll_interval=params.batch_poll_s,
            **cls.client_options(params),
        )

    # ------------------------------------------------------------------ durable batch records
    def _records(self) -> list[dict[str, Any]]:
        records = []
        for path in sorted(self.state_dir.glob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                continue  # torn by a crash before the id was acknowledged
            checked_id("batch", record.get("batch_id"))
            records.append(record)
        return records

    def _save_record(self, record: dict[str, Any]) -> None:
        """Write ``record`` durably, named from our request keys (never from the server's id)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        keys = hashlib.sha256(json.dumps([record["attempt"], record["keys"]]).encode()).hexdigest()[
            :16
        ]
        name = f"{record['submitted']}-{keys}-{secrets.token_hex(3)}"
        path = self.state_dir / f"{name}.json"
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
                input_file_id=checked_id("file", upload.id),
                endpoint=ENDPOINT,
                completion_window="24h",
            )
        )
        record = {
            "batch_id": checked_id("batch", batch.id),
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
            checked_id("file", file_id)
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
