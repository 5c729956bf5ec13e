"""The durable reply cache: reopen, torn lines, first write wins, one shard per process;
the shared store behind it: lookups in order, writes to both, a lock per generation."""

from __future__ import annotations

import threading
import time

from hybridscore.llm.cache import SHARD_DIR, ReplyCache, SharedReplies


def test_cache_survives_reopen_skips_a_torn_line_and_keeps_the_first_write(tmp_path) -> None:
    with ReplyCache(tmp_path) as cache:
        cache.put("a", {"choices": ["one"]})
        cache.put("a", {"choices": ["other"]})
        cache.put("b", {"choices": ["two"]})
    shard = next((tmp_path / SHARD_DIR).glob("*.jsonl"))
    with shard.open("ab") as handle:
        handle.write(b'{"key": "c", "choi')  # what kill -9 mid-write can leave
    reopened = ReplyCache(tmp_path)
    assert reopened.get("a")["choices"] == ["one"]
    assert len(reopened) == 2 and "c" not in reopened and reopened.torn_lines == 1
    reopened.put("c", {"choices": ["three"]})  # a new process writes a new shard
    reopened.close()
    assert len(list((tmp_path / SHARD_DIR).glob("*.jsonl"))) == 2
    assert ReplyCache(tmp_path).get("c")["choices"] == ["three"]


def test_shared_store_is_read_after_the_own_shards_and_written_with_them(tmp_path) -> None:
    shared = SharedReplies(tmp_path / "shared")
    with ReplyCache(tmp_path / "a", shared=shared) as first:
        first.put("k", {"choices": ["one"]})
    with ReplyCache(tmp_path / "b", shared=shared) as second:
        assert "k" in second and len(second) == 0
        assert second.get("k")["choices"] == ["one"] and len(second) == 1  # copied in
        second.put("k", {"choices": ["other"]})  # first write wins, in both tiers
    assert ReplyCache(tmp_path / "b").get("k")["choices"] == ["one"]  # durable without shared
    assert shared.get("k")["choices"] == ["one"] and shared.get("missing") is None

    with ReplyCache(tmp_path / "c") as pulled:  # e.g. replies that came with `dvc pull`
        pulled.put("p", {"choices": ["pulled"]})
    with ReplyCache(tmp_path / "c", shared=shared) as cache:
        cache.get("p")
    assert shared.get("p")["choices"] == ["pulled"]  # published on the first hit


def test_a_torn_shared_reply_reads_as_a_miss_and_is_replaced(tmp_path) -> None:
    shared = SharedReplies(tmp_path)
    shared.put("ab12", {"key": "ab12", "choices": ["x"]})
    path = tmp_path / "ab" / "ab12.json"
    path.write_text('{"key": "ab1')  # what a crash of an unsynced write can leave
    assert shared.get("ab12") is None
    shared.put("ab12", {"key": "ab12", "choices": ["y"]})
    assert shared.get("ab12")["choices"] == ["y"]
    assert [p.name for p in path.parent.iterdir()] == ["ab12.json"]  # no file left aside


def test_the_generation_lock_makes_a_second_holder_wait(tmp_path) -> None:
    shared, order = SharedReplies(tmp_path), []

    def second() -> None:
        with shared.lock("gen"):
            order.append("second")

    with shared.lock("gen"):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.2)
        order.append("first done")
    thread.join(timeout=10)
    assert order == ["first done", "second"]
    with shared.lock("other"), shared.lock("gen"):  # other generations do not wait
        pass


class CountingBackend:
    """Answers every ask with the ask's number; counts the asks per request."""

    name, model, max_batch, concurrency = "counting", "m", 1, 1

    def __init__(self) -> None:
        from collections import Counter

        self.asks: Counter[str] = Counter()

    async def complete(self, requests, attempt):
        from hybridscore.llm import Completion, Usage

        for request in requests:
            self.asks[request.key] += 1
        return [Completion([f"ask {attempt}"], Usage(5, 5)) for _ in requests]

    async def aclose(self) -> None:
        pass


def test_a_request_rejected_after_its_reasks_is_not_paid_for_again(tmp_path) -> None:
    from hybridscore.llm import Engine, Request

    requests = [Request(k, (("user", k),), 0.3, 10, 1) for k in ("good", "bad")]

    def judge(request, choices) -> str | None:  # "bad" is never good enough
        return "not an answer" if request.key == "bad" else None

    def run(max_reasks: int) -> tuple[Engine, CountingBackend]:
        backend = CountingBackend()
        with ReplyCache(tmp_path) as cache:
            engine = Engine(backend, cache, max_reasks=max_reasks, progress=False)
            assert list(engine.run(requests, judge)) == ["good"]
        return engine, backend

    first, paid = run(max_reasks=2)
    assert paid.asks == {"good": 1, "bad": 3} and first.stats.failed == 1
    again, paid = run(max_reasks=2)  # e.g. the next cell of a sweep
    assert not paid.asks and again.stats.cache_hits == 2
    assert again.stats.failures == first.stats.failures  # the same failure, read back
    more, paid = run(max_reasks=4)  # more re-asks allowed: only the new ones are asked
    assert paid.asks == {"bad": 2} and more.stats.requests_sent == 2
    assert "(4 re-asks)" in more.stats.failures["bad"][1]
    kept = ReplyCache(tmp_path).get("rejected_after_reasks-5-bad")  # nothing paid for is lost
    assert kept["choices"] == ["ask 4"] and kept["reason"] == "not an answer"
