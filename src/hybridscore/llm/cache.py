"""Durable, shareable reply cache: append-only, fsync'd JSONL shards in one directory.

Every process appends to a shard of its own (``replies/<time>-<pid>-<rand>.jsonl``), so shards
are never rewritten: ``dvc push`` uploads only new shards, and two teammates' caches merge by
copying files. Each record is one ``write`` to the kernel before ``put`` returns, so a
``kill -9`` loses nothing acknowledged (at most one torn last line, which reading skips).
Against power loss, a background thread fsyncs the shard every ``sync_interval`` seconds
(group commit: one fsync per burst instead of one per reply); ``sync_interval=0`` fsyncs
inside every ``put``; ``close`` always fsyncs.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

SHARD_DIR = "replies"


class ReplyCache:
    """Map request key → record (a JSON object); ``put`` is durable when it returns."""

    def __init__(
        self, root: str | os.PathLike[str], *, fsync: bool = True, sync_interval: float = 0.05
    ) -> None:
        self.root = Path(root)
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
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

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
        """Append ``record`` under ``key`` (first write wins) and fsync before returning."""
        if key in self._records:
            return
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
