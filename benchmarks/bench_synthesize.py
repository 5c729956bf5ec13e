"""Synthesis engine throughput and cached-rerun time, against the local fake OpenAI server.

    python -m benchmarks.bench_synthesize [--concurrency 32] [--latency 0.2] [--cached 10000]
        [--json benchmarks/synthesize.json]

1. Throughput: ``concurrency × rounds`` requests through the real SDK to a server that takes a
   fixed ``latency`` per request; reports requests/s as a fraction of the bound
   ``concurrency / latency`` (goal ≥ 0.8).
2. Cached rerun: the whole stage (plan, cache lookup, validation, filters, write) over
   ``--cached`` requests that are all in the cache already (goal < 2 s, no request sent).

Everything runs in a temporary folder on loopback; nothing in the repository is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import chdir, contextmanager
from pathlib import Path

import yaml

from benchmarks.machine import cpu_summary
from hybridscore.llm import Engine, ReplyCache
from hybridscore.llm.backends.openai_chat import OpenAIBackend
from hybridscore.llm.retry import RetryPolicy

TESTS = Path(__file__).resolve().parents[1] / "tests"  # the fake server is test code
sys.path.insert(0, str(TESTS))
from fakes.openai_server import fake_texts, schema_requests  # noqa: E402

GOALS = {"throughput_fraction": 0.8, "cached_rerun_s": 2.0}
PROMPTS = Path(__file__).resolve().parents[1] / "src" / "hybridscore" / "prompts"


@contextmanager
def _server_process(latency: float) -> Iterator[str]:
    """The fake server in a child process; yields its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "fakes.openai_server",
        "--port",
        str(port),
        "--latency",
        str(latency),
        "--lifetime",
        "300",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
    }
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline() if process.stdout else ""
        if "serving on" not in line:
            raise RuntimeError(f"test server did not start: {line!r}")
        yield line.split()[2]
    finally:
        process.terminate()
        process.wait(timeout=10)


def bench_throughput(concurrency: int, latency: float, rounds: int, workdir: Path) -> dict:
    """Requests/s through the engine against a server with a fixed latency."""
    total = concurrency * rounds
    requests = schema_requests(total, ["x"], answers=1, max_tokens=100, prompt="bench")
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    with _server_process(latency) as base_url:  # its own process: no GIL shared with the client
        backend = OpenAIBackend(
            "gpt-4o",
            base_url=base_url,
            concurrency=concurrency,
            timeout=30,
            retry=RetryPolicy(3, 0.1, 1.0),
        )
        with ReplyCache(workdir / "throughput") as cache:
            engine = Engine(backend, cache, progress=False)
            started = time.perf_counter()
            results = engine.run(requests, lambda request, choices: None)
            elapsed = time.perf_counter() - started
    rate = len(results) / elapsed
    bound = concurrency / latency
    return {
        "requests": total,
        "concurrency": concurrency,
        "latency_s": latency,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(rate, 1),
        "bound_requests_per_s": round(bound, 1),
        "throughput_fraction": round(rate / bound, 3),
    }


def _workspace(root: Path, per_label: int) -> None:
    """Prepared splits + params for ``3 × per_label`` single-answer requests."""
    import pandas as pd

    from hybridscore.data import write_table

    labels = ["incorrect", "partial", "correct"]
    rows = [
        {
            "id": f"t{q}-{label}-{i}",
            "question_id": f"Q{q}",
            "label": label,
            "source": "human",
            "text": f"student {i} answer to {q} is {label} number {q * 7 + i}",
            "question": f"Question {q}?",
            "reference": f"Reference {q}.",
        }
        for q in range(20)
        for label in labels
        for i in range(5)
    ]
    prepared = root / "data" / "prepared"
    prepared.mkdir(parents=True)
    write_table(pd.DataFrame(rows), prepared / "train.csv")
    (prepared / "labels.json").write_text(json.dumps({"labels": labels}))
    section = {
        "backend": "openai",
        "model": "gpt-4o",
        "base_url": "http://127.0.0.1:9/v1",
        "responses_per_label": per_label,
        "responses_per_request": 1,
        "n": 1,
        "topup_rounds": 0,
        "progress": False,
        "prompt_template": str(PROMPTS / "generate_responses.txt"),
    }
    params = {"seed": 1, "data": {"source": "unused.csv"}, "synthesize": section}
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def bench_cached_rerun(items: int, workdir: Path) -> dict:
    """Time a full stage run whose requests are all cached (the server port is closed)."""
    from hybridscore import synthesize

    root = workdir / "cached"
    per_label = -(-items // 3)
    _workspace(root, per_label)
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    with chdir(root):
        paths = synthesize.Paths()
        synthesis = synthesize.Synthesis.load(paths)
        slots = synthesis.planner.base_slots()
        with ReplyCache(paths.cache, fsync=False) as cache:  # fast setup only
            for slot in slots:
                texts = fake_texts(slot.request.key, slot.label, 1, 1)[0]
                reply = json.dumps({"label": slot.label, "responses": texts})
                cache.put(slot.request.key, {"choices": [reply], "label": slot.label})
        started = time.perf_counter()
        synthesize.run(paths, progress=False)
        elapsed = time.perf_counter() - started
        report = json.loads(paths.metrics.read_text())
    return {
        "requests": len(slots),
        "seconds": round(elapsed, 3),
        "requests_sent": report["requests_sent"],
        "cache_hits": report["cache_hits"],
        "rows": report["rows"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_synthesize", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=25, help="requests = concurrency × rounds")
    parser.add_argument("--cached", type=int, default=10_000, help="requests in the cached rerun")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        throughput = bench_throughput(args.concurrency, args.latency, args.rounds, Path(tmp))
        cached = bench_cached_rerun(args.cached, Path(tmp))
    result = {
        "machine": cpu_summary(),
        "throughput": throughput,
        "cached_rerun": cached,
        "goals": GOALS,
        "meets_goals": {
            "throughput_fraction": throughput["throughput_fraction"]
            >= GOALS["throughput_fraction"],
            "cached_rerun_s": cached["seconds"] < GOALS["cached_rerun_s"]
            and cached["requests_sent"] == 0,
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
