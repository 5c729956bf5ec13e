"""A small OpenAI-compatible HTTP server for tests and benchmarks, with fault injection.

Loopback only, bounded (a request cap and a lifetime after which it stops by itself).
Implements ``POST /v1/chat/completions``, ``POST /v1/files``, ``GET /v1/files/{id}/content``,
``POST /v1/batches`` and ``GET /v1/batches/{id}``. It answers deterministically per request
body (``body_key``: a hash of the chat body, which holds the sampling seed of each ask), so
two runs of the same requests produce the same rows, and it counts everything it served.

    python tests/fakes/openai_server.py --latency 0.2 --fault-rate 0.3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hybridscore.llm.types import Request
from hybridscore.synth.validate import responses_schema

MISSING_MODEL = "no-such-model"
_VOCABULARY = (
    "water heat energy light plant cell force motion mass volume sound wave rock soil moss "
    "circuit battery bulb switch magnet iron copper shadow sun earth moon orbit gravity "
    "pressure density liquid solid gas melt freeze boil evaporate condense contour line "
    "elevation meter map slope river erosion weather season root stem leaf seed flower "
    "because so then also maybe think more less same different bigger smaller faster slower"
)
WORDS = _VOCABULARY.split()
HTTP_FAULTS = ("rate_limit", "server_error", "timeout", "drop", "truncated_body")
CONTENT_FAULTS = ("invalid_json", "off_schema", "wrong_label")


@dataclass(frozen=True)
class Faults:
    """Probability of each injected fault per chat request (the rest are answered well)."""

    rate_limit: float = 0.0  # 429 with Retry-After
    server_error: float = 0.0  # 500 / 503
    timeout: float = 0.0  # no answer before the client's timeout
    drop: float = 0.0  # connection closed without a response
    truncated_body: float = 0.0  # HTTP body cut short
    invalid_json: float = 0.0  # reply content is not JSON
    off_schema: float = 0.0  # JSON, wrong shape
    wrong_label: float = 0.0  # JSON for another label
    retry_after: float = 0.05  # seconds, sent with 429

    @classmethod
    def spread(cls, total: float, retry_after: float = 0.05) -> Faults:
        """``total`` fault probability spread evenly over every kind."""
        each = total / (len(HTTP_FAULTS) + len(CONTENT_FAULTS))
        return cls(**dict.fromkeys(HTTP_FAULTS + CONTENT_FAULTS, each), retry_after=retry_after)

    def draw(self, rng: random.Random) -> str:
        roll = rng.random()
        for kind in HTTP_FAULTS + CONTENT_FAULTS:
            roll -= getattr(self, kind)
            if roll < 0:
                return kind
        return "ok"


@dataclass
class ServerStats:
    """What the server saw; ``ok_by_key`` counts complete, valid replies per ``body_key``."""

    chat_requests: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    ok_by_key: Counter[str] = field(default_factory=Counter)
    texts_by_key: dict[str, list[str]] = field(default_factory=dict)
    batches_created: int = 0
    authorization: set[str] = field(default_factory=set)
    prompts: list[str] = field(default_factory=list)  # every message text it was sent
    grades: Counter[str] = field(default_factory=Counter)


def schema_requests(
    count: int, labels: Sequence[str], *, answers: int, max_tokens: int, prompt: str
) -> list[Request]:
    """``count`` distinct Structured Outputs requests, labels in turn, ``answers`` each."""
    out = []
    for i in range(count):
        label = labels[i % len(labels)]
        out.append(
            Request(
                key=f"{i:064x}",
                messages=(("user", f"{prompt} {i}"),),
                temperature=0.3,
                max_tokens=max_tokens,
                seed=i,
                n=1,
                count=answers,
                label=label,
                schema=responses_schema(label, answers),
            )
        )
    return out


def body_key(body: dict[str, Any]) -> str:
    """The key of a chat body (canonical JSON): the same in a chat call and a batch line."""
    blob = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def fake_texts(key: str, label: str, n: int, count: int) -> list[list[str]]:
    """Deterministic, mutually dissimilar answers: ``n`` choices × ``count`` answers."""
    out = []
    for c in range(n):
        rng = random.Random(f"{key}|{c}")
        out.append(
            [
                f"{label} answer {key[:10]}{c}{j} " + " ".join(rng.choice(WORDS) for _ in range(12))
                for j in range(count)
            ]
        )
    return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # the default backlog of 5 drops bursts of new connections

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about clients that hung up mid-request (a killed or interrupted run)."""
        if not isinstance(sys.exc_info()[1], ConnectionError | json.JSONDecodeError):
            super().handle_error(request, client_address)


class FakeOpenAIServer:
    """Run with ``with FakeOpenAIServer(...) as server:``; ``server.base_url`` ends in ``/v1``."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        faults: Faults | None = None,
        seed: int = 0,
        timeout_sleep: float = 2.0,
        max_requests: int = 200_000,
        lifetime: float = 600.0,
        batch_polls: int = 2,
        port: int = 0,
        api_key: str | None = None,
        disagree: float = 0.0,
        fail_first: int = 0,
        batch_id: str | None = None,
    ) -> None:
        self.latency = latency
        self.faults = faults or Faults()
        self.timeout_sleep = timeout_sleep
        self.max_requests = max_requests
        self.lifetime = lifetime
        self.batch_polls = batch_polls
        self.api_key = api_key  # when set, other keys get 401
        self.disagree = disagree  # share of grading replies that contradict the intended label
        self.fail_first = fail_first  # the first chat requests get a 500, whatever the faults
        self.batch_id = batch_id  # when set, every batch is reported under this (bad) id
        self.stats = ServerStats()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._files: dict[str, bytes] = {}
        self._batches: dict[str, dict[str, Any]] = {}
        self._httpd = _Server(("127.0.0.1", port), self._handler_class())
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeOpenAIServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.lifetime, self.stop)  # stops by itself
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ replies
    def chat_reply(self, body: dict[str, Any], key: str, fault: str) -> dict[str, Any]:
        """A chat completion for ``body`` (``fault`` may spoil its content)."""
        fmt = (body.get("response_format") or {}).get("json_schema", {}).get("schema")
        n = int(body.get("n") or 1)
        if fmt and "responses" not in fmt["properties"]:
            return self._grade_reply(body, fmt["properties"]["label"]["enum"], key)
        if fmt:
            label = fmt["properties"]["label"]["enum"][0]
            count = int(fmt["properties"]["responses"].get("maxItems", 1))
        else:
            label, count = "free", 1
        choices = []
        for texts in fake_texts(key, label, n, count):
            if fmt is None:
                content = "\n".join(f"{i + 1}. {t}" for i, t in enumerate(texts))
            elif fault == "off_schema":
                content = json.dumps({"answers": texts})
            elif fault == "wrong_label":
                content = json.dumps({"label": f"not-{label}", "responses": texts})
            else:
                content = json.dumps({"label": label, "responses": texts})
                if fault == "invalid_json":
                    content = content[: len(content) // 2]
            choices.append(
                {
                    "index": len(choices),
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "length" if fault == "invalid_json" else "stop",
                }
            )
        prompt = sum(len(m.get("content", "")) for m in body.get("messages", [])) // 4
        completion = sum(len(c["message"]["content"]) for c in choices) // 4
        return {
            "id": f"chatcmpl-{key[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }

    def _grade_reply(self, body: dict[str, Any], labels: list[str], key: str) -> dict[str, Any]:
        """Grade a fake answer by the label it starts with; ``disagree`` of the time, another."""
        prompt = body["messages"][-1]["content"]
        grade = next((x for x in labels if f"Student answer: {x} answer" in prompt), labels[0])
        disagree = random.Random(key).random() < self.disagree
        if disagree:
            grade = labels[(labels.index(grade) + 1) % len(labels)]
        with self._lock:
            self.stats.grades["disagreed" if disagree else "agreed"] += 1
        message = {"role": "assistant", "content": json.dumps({"label": grade})}
        return {
            "id": f"chatcmpl-{key[:16]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": len(prompt) // 4,
                "completion_tokens": 5,
                "total_tokens": len(prompt) // 4 + 5,
            },
        }

    def _record_ok(self, key: str, reply: dict[str, Any]) -> None:
        texts = []
        for choice in reply["choices"]:
            texts += json.loads(choice["message"]["content"]).get("responses", [])
        if not texts:
            return  # a grading reply
        with self._lock:
            self.stats.ok_by_key[key] += 1
            self.stats.texts_by_key[key] = texts

    def _create_batch(self, spec: dict[str, Any]) -> dict[str, Any]:
        lines = self._files[spec["input_file_id"]].decode().splitlines()
        out, errors = [], []
        for line in filter(None, lines):
            item = json.loads(line)
            with self._lock:
                self.stats.prompts += [m.get("content", "") for m in item["body"]["messages"]]
            with self._lock:
                fault = self.faults.draw(self._rng)
            key, custom_id = body_key(item["body"]), item["custom_id"]
            if fault in HTTP_FAULTS:
                errors.append(
                    {
                        "id": f"req-{key[:8]}",
                        "custom_id": custom_id,
                        "response": {"status_code": 500, "body": {}},
                        "error": {"code": "server_error", "message": "injected"},
                    }
                )
                continue
            reply = self.chat_reply(item["body"], key, fault)
            if fault == "ok":
                self._record_ok(key, reply)
            out.append(
                {
                    "id": f"req-{key[:8]}",
                    "custom_id": custom_id,
                    "response": {"status_code": 200, "body": reply},
                    "error": None,
                }
            )
            with self._lock:
                self.stats.outcomes[f"batch_{fault}"] += 1
        batch_id = self.batch_id
        if batch_id is None:
            batch_id = f"batch_{len(self._batches) + 1:04d}"
        files = {}
        for name, rows in (("output_file_id", out), ("error_file_id", errors)):
            if rows:
                file_id = f"file-{batch_id}-{name[:3]}"
                self._files[file_id] = ("\n".join(json.dumps(r) for r in rows) + "\n").encode()
                files[name] = file_id
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": spec["endpoint"],
            "input_file_id": spec["input_file_id"],
            "completion_window": "24h",
            "status": "validating",
            "created_at": int(time.time()),
            "_polls": 0,
            "_files": files,
            "request_counts": {"total": len(lines), "completed": len(out), "failed": len(errors)},
        }
        with self._lock:
            self._batches[batch_id] = batch
            self.stats.batches_created += 1
        return self._public_batch(batch)

    def _public_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        public = {k: v for k, v in batch.items() if not k.startswith("_")}
        if batch["status"] == "completed":
            public.update(batch["_files"])
        return public

    def _poll_batch(self, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return None
            batch["_polls"] += 1
            batch["status"] = "completed" if batch["_polls"] >= self.batch_polls else "in_progress"
            return self._public_batch(batch)

    # ------------------------------------------------------------------ HTTP plumbing
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stall

            def log_message(self, *args: object) -> None:  # quiet
                return None

            def _send(
                self,
                status: int,
                payload: Any,
                headers: dict[str, str] | None = None,
                raw: bytes | None = None,
                cut: bool = False,
            ) -> None:
                data = raw if raw is not None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if cut else data)
                if cut:
                    self._hang_up()

            def _hang_up(self) -> None:
                self.close_connection = True
                try:
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_POST(self) -> None:
                body = self._body()
                if (
                    server.api_key
                    and self.headers.get("Authorization") != f"Bearer {server.api_key}"
                ):
                    self._send(
                        401, {"error": {"message": "invalid key", "code": "invalid_api_key"}}
                    )
                elif self.path.endswith("/chat/completions"):
                    self._chat(json.loads(body))
                elif self.path.endswith("/files"):
                    self._upload(body)
                elif self.path.endswith("/batches"):
                    self._send(200, server._create_batch(json.loads(body)))
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_GET(self) -> None:
                parts = self.path.split("?")[0].strip("/").split("/")
                if len(parts) == 3 and parts[1] == "batches":
                    batch = server._poll_batch(parts[2])
                    self._send(200 if batch else 404, batch or {"error": {"message": "no batch"}})
                elif len(parts) == 4 and parts[1] == "files" and parts[3] == "content":
                    data = server._files.get(parts[2])
                    self._send(200 if data else 404, None, raw=data or b"{}")
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def _upload(self, body: bytes) -> None:
                boundary = self.headers.get_content_type() and self.headers.get_param("boundary")
                content = b""
                for part in body.split(b"--" + str(boundary).encode()):
                    head, _, data = part.partition(b"\r\n\r\n")
                    if b'name="file"' in head:
                        content = data.rsplit(b"\r\n", 1)[0]
                with server._lock:
                    file_id = f"file-{len(server._files) + 1:04d}"
                    server._files[file_id] = content
                self._send(
                    200,
                    {
                        "id": file_id,
                        "object": "file",
                        "bytes": len(content),
                        "created_at": int(time.time()),
                        "filename": "requests.jsonl",
                        "purpose": "batch",
                        "status": "processed",
                    },
                )

            def _chat(self, body: dict[str, Any]) -> None:
                key = body_key(body)
                with server._lock:
                    server.stats.chat_requests += 1
                    server.stats.prompts += [m.get("content", "") for m in body.get("messages", [])]
                    if self.headers.get("Authorization"):
                        server.stats.authorization.add(self.headers["Authorization"])
                    over = server.stats.chat_requests > server.max_requests
                    fault = "over_limit" if over else server.faults.draw(server._rng)
                    if server.stats.chat_requests <= server.fail_first:
                        fault = "server_error"
                    server.stats.outcomes[fault] += 1
                if server.latency:
                    time.sleep(server.latency)
                if body.get("model") == MISSING_MODEL:  # as OpenAI answers an unknown model
                    self._send(
                        404, {"error": {"message": "model not found", "code": "model_not_found"}}
                    )
                elif fault == "over_limit":
                    self._send(503, {"error": {"message": "test server request cap reached"}})
                elif fault == "rate_limit":
                    self._send(
                        429,
                        {"error": {"message": "rate limited", "type": "requests"}},
                        headers={"Retry-After": str(server.faults.retry_after)},
                    )
                elif fault == "server_error":
                    status = 500 if server.stats.chat_requests % 2 else 503
                    self._send(status, {"error": {"message": "injected server error"}})
                elif fault == "timeout":
                    time.sleep(server.timeout_sleep)
                    self._hang_up()
                elif fault == "drop":
                    self._hang_up()
                else:
                    reply = server.chat_reply(body, key, fault)
                    self._send(200, reply, cut=fault == "truncated_body")
                    if fault == "ok":
                        server._record_ok(key, reply)

        return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per chat request")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="spread over all fault kinds")
    parser.add_argument(
        "--lifetime", type=float, default=600.0, help="stop after this many seconds"
    )
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(
        latency=args.latency,
        faults=Faults.spread(args.fault_rate),
        lifetime=args.lifetime,
        port=args.port,
    ).start()
    print(f"serving on {server.base_url} for {args.lifetime:.0f} s", flush=True)
    assert server._thread is not None
    server._thread.join()


if __name__ == "__main__":
    main()
