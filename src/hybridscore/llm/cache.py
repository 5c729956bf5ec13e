"""Durable, shareable reply cache: append-only, fsync'd JSONL shards in one directory.

Every process appends to a shard of its own (``replies/<time>-<pid>-<rand>.jsonl``), so shards
are never rewritten: ``dvc push`` uploads only new shards, and two teammates' caches merge by
copying files. Each record is one ``write`` to the kernel before ``put`` returns, so a
``kill -9`` loses nothing acknowledged (at most one torn last line, which reading skips).
Against power loss, a background thread fsyncs the shard every ``sync_interval`` seconds
(group commit: one fsync per burst instead of one per reply); ``sync_interval=0`` fsyncs
inside every ``put``; ``close`` always fsyncs.

``SharedReplies`` is the second tier: a content-addressed store (one file per request key)
that every workspace of a repository can read and write at once, with a lock per generation so
that two runs of the same generation never both pay. ``ReplyCache(root, shared=...)`` looks a
key up in its own shards first, then in the shared store (copying a hit into its shards), and
writes every new reply to both.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SHARD_DIR = "replies"
LOCK_DIR = "locks"


class SharedReplies:
    """Append-only, content-addressed replies: ``<root>/<key[:2]>/<key>.json``, first write wins.

    A reply file appears whole or not at all (written aside, then hard-linked into place), so
    any number of processes may write at once. It is an accelerator: losing it costs requests,
    never data, so it is not fsync'd and an unreadable file reads as a miss.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            record = json.loads(self._path(key).read_bytes())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("key") == key else None

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Publish ``record`` (which holds ``key``) unless a readable one is there already."""
        path = self._path(key)
        if path.exists() and self.get(key) is not None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        aside = path.parent / f".{key}.{os.getpid()}.{secrets.token_hex(3)}.tmp"
        aside.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        try:
            os.link(aside, path)
        except FileExistsError:
            if self.get(key) is None:  # a torn file left by a crash: replace it
                os.replace(aside, path)
        finally:
            aside.unlink(missing_ok=True)

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the exclusive lock ``name`` (e.g. a generation's fingerprint); others wait."""
        lock_dir = self.root / LOCK_DIR
        lock_dir.mkdir(parents=True, exist_ok=True)
        with (lock_dir / f"{name}.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released by close, and by the kernel on death
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class ReplyCache:
    """Map request key → record (a JSON object); ``put`` is durable when it returns."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        fsync: bool = True,
        sync_interval: float = 0.05,
        shared: SharedReplies | None = None,
    ) -> None:
        self.root = Path(root)
        self.shared = shared
        self.fsync = fsync
        self.sync_interval = sync_interval
        self._records: dict[str, dict[str, Any]] = {}
        self._fd: int | None = None
        self._dirty = threading.Event()
        self._closing = False
        self._syncer: threading.Thread | None = None
        self.torn_lines = 0
        self._load()

    def _load(self) -> None:
        shard_dir = self.root / SHARD_DIR
        if not shard_dir.is_dir():
            return
        for shard in sorted(shard_dir.glob("*.jsonl")):
            with shard.open("rb") as handle:
                for line in handle:
                    try:
                        record = json.loads(line)
                        key = record["key"]
                    except (ValueError, KeyError, TypeError):
                        self.torn_lines += 1  # a write cut short by kill -9: never acknowledged
                        continue
                    self._records.setdefault(key, record)

    def __contains__(self, key: str) -> bool:
        return key in self._records or (self.shared is not None and key in self.shared)

    def __len__(self) -> int:
        """Replies in this cache's own shards (the shared store is not counted)."""
        return len(self._records)

    def get(self, key: str) -> dict[str, Any] | None:
        """The record of ``key``: own shards, then the shared store (copied into the shards).

        A hit in the own shards is published to the shared store too (e.g. pulled replies)."""
        record = self._records.get(key)
        if self.shared is None:
            return record
        if record is not None:
            self.shared.put(key, record)
            return record
        found = self.shared.get(key)
        if found is not None:
            self._append(key, {k: v for k, v in found.items() if k != "key"})
            record = self._records[key]
        return record

    def _open_shard(self) -> int:
        shard_dir = self.root / SHARD_DIR
        shard_dir.mkdir(parents=True, exist_ok=True)
        name = (
            f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        fd = os.open(shard_dir / f"{name}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if self.fsync:  # make the new directory entry durable too
            dir_fd = os.open(shard_dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return fd

    def put(self, key: str, record: dict[str, Any]) -> None:
        """Append ``record`` under ``key`` (first write wins), durable when this returns, and
        publish it to the shared store."""
        if key in self._records:
            return
        self._append(key, record)
        if self.shared is not None:
            self.shared.put(key, self._records[key])

    def _append(self, key: str, record: dict[str, Any]) -> None:
        record = {"key": key, **record}
        line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        if self._fd is None:
            self._fd = self._open_shard()
        os.write(self._fd, line)  # one O_APPEND write per line: never interleaved
        if self.fsync and self.sync_interval <= 0:
            os.fsync(self._fd)
        elif self.fsync:
            if self._syncer is None:
                self._syncer = threading.Thread(target=self._sync_loop, daemon=True)
                self._syncer.start()
            self._dirty.set()
        self._records[key] = record

    def _sync_loop(self) -> None:
        while True:
            self._dirty.wait()
            if self._closing:
                return
            self._dirty.clear()
            if self._fd is not None:
                os.fsync(self._fd)
            time.sleep(self.sync_interval)

    def close(self) -> None:
        if self._syncer is not None:
            self._closing = True
            self._dirty.set()
            self._syncer.join()
            self._syncer = None
            self._closing = False
        if self._fd is not None:
            if self.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ReplyCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
