"""The one table shape between stages, its read/write helpers, and reading users' CSVs."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hybridscore.errors import HybridscoreError

REQUIRED_COLUMNS = ["id", "question_id", "text", "label", "source"]
OPTIONAL_COLUMNS = ["question", "reference", "label_rater2"]
TABLE_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- atomic writes
# An output is written under a temporary name beside it and renamed into place when complete,
# so a reader sees the old version or the new one, never a part. The temporary name says what
# it is (``.<name>.<pid>.<random>.partial``): it cannot be taken for a result, and the next
# write of the same output deletes the ones whose process is gone (a killed run's).
PARTIAL = ".partial"


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_partials(path: Path) -> None:
    """Delete the partial writes of ``path`` that a killed process left behind."""
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*{PARTIAL}"):
        pid = leftover.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()


def _partial_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False where the system or file system cannot, so the caller falls back to two
    renames (between which ``b`` briefly does not exist).
    """
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.EINVAL, errno.ENOSYS, errno.EPERM):
        return False
    raise OSError(error, os.strerror(error), str(b))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_partial_prefix(path), suffix=PARTIAL)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty folder beside ``path``; it replaces ``path`` if the block succeeds.

    The files written into it appear together or not at all: the new folder and the old one
    are swapped in one step where the system can (Linux), so a reader (or a kill at any
    moment) sees the old set or the new set, never a mix of the two.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_partial_prefix(path), suffix=PARTIAL))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the result should not be
    try:
        yield tmp
        if not (path.exists() and _exchange(tmp, path)):
            if path.exists():  # no exchange here: move the old one aside first
                old = Path(
                    tempfile.mkdtemp(dir=path.parent, prefix=_partial_prefix(path), suffix=PARTIAL)
                )
                os.replace(path, old / path.name)
            os.replace(tmp, path)
    finally:  # after an exchange, ``tmp`` holds the old folder
        shutil.rmtree(tmp, ignore_errors=True)
        for leftover in path.parent.glob(f"{glob.escape(_partial_prefix(path))}*{PARTIAL}"):
            shutil.rmtree(leftover, ignore_errors=True)


def write_json(data: Any, path: str | os.PathLike[str]) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: str | os.PathLike[str]) -> Any:
    """A JSON file written by a stage; a missing or broken one is one message naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HybridscoreError(f"{path}: not found (run the stage that writes it first)") from None
    except UnicodeDecodeError as exc:
        raise HybridscoreError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise HybridscoreError(f"{path}: not valid JSON ({exc})") from None


# --------------------------------------------------------------------------- stage tables
def write_table(table: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write a stage table (CSV, UTF-8) with the standard columns, atomically."""
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"table for {path} lacks columns {missing}")
    columns = REQUIRED_COLUMNS + [c for c in OPTIONAL_COLUMNS if c in table.columns]
    with atomic_path(path) as tmp:
        table[columns].to_csv(tmp, index=False, encoding="utf-8")


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a stage table written by ``write_table`` (all columns as strings)."""
    path = Path(path)
    if not path.exists():
        raise HybridscoreError(f"{path}: not found (run the stage that writes it first)")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise HybridscoreError(f"{path}: the file is empty") from None
    except UnicodeDecodeError as exc:
        raise HybridscoreError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    except pd.errors.ParserError as exc:
        raise HybridscoreError(f"{path}: not a valid CSV: {exc}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise HybridscoreError(f"{path}: missing column(s) {', '.join(missing)}")
    return table


def write_labels(labels: list[str], path: str | os.PathLike[str]) -> None:
    write_json({"labels": labels}, path)


def read_labels(path: str | os.PathLike[str]) -> list[str]:
    """The ordered label list (low → high) that fixes class ids for every model."""
    labels = read_json(path)
    labels = labels.get("labels") if isinstance(labels, dict) else None
    if not isinstance(labels, list) or len(labels) < 2:
        raise HybridscoreError(f"{path}: expected a list of at least two labels")
    return [str(label) for label in labels]


def stratified_sample(table: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` rows keeping the label proportions of ``table`` (largest remainder), seeded."""
    if n == len(table) or n == 0:
        return table.iloc[:n]
    counts = table["label"].value_counts().sort_index()
    exact = counts / counts.sum() * n
    take = exact.astype(int)
    remainder = (exact - take).sort_values(ascending=False, kind="stable")
    take[remainder.index[: n - int(take.sum())]] += 1
    parts = [
        table[table["label"] == label].sample(n=int(k), random_state=seed)
        for label, k in take.items()
        if k > 0
    ]
    return pd.concat(parts)


def limit_rows(table: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """At most ``limit`` rows, stratified by label (``max_train_rows``, for quick runs)."""
    return table if limit is None or len(table) <= limit else stratified_sample(table, limit, seed)


# --------------------------------------------------------------------------- model examples
@dataclass
class Examples:
    """Texts with label ids and, for distillation, the teacher's logits."""

    texts: list[str]
    labels: list[int]
    teacher_logits: np.ndarray | None = None


def examples_from_table(table: pd.DataFrame, labels: list[str], source: str) -> Examples:
    """Turn a stage table into texts + label ids (the id is the label's place in ``labels``)."""
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(table["label"]) - set(index))
    if unknown:
        raise HybridscoreError(f"{source}: labels {unknown} are not in labels.json {labels}")
    return Examples(texts=table["text"].tolist(), labels=[index[x] for x in table["label"]])
