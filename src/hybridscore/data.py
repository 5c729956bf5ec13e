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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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


def human_budget(human: pd.DataFrame, per_label: int | None, seed: int) -> pd.DataFrame:
    """The human-label budget (``mix.human_per_label``, ``mix.seed``): the first ``per_label``
    rows of each label in a seeded order (all where it has fewer), so a smaller budget's rows
    are always part of a larger one's. ``mix`` trains on exactly these rows and ``synthesize``
    takes its few-shot examples from them only."""
    if per_label is None:
        return human
    order = human.sample(frac=1.0, random_state=seed)
    return order.groupby("label", sort=False).head(per_label).sort_index()


def limit_rows(table: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """At most ``limit`` rows, stratified by label (``max_train_rows``, for quick runs)."""
    return table if limit is None or len(table) <= limit else stratified_sample(table, limit, seed)


# --------------------------------------------------------------------------- model inputs
# What a model reads (``data.input``): the response alone, or a text pair whose first segment
# is the question or the reference answer and whose second segment is the response.
InputMode = Literal["text", "question+text", "reference+text"]
PAIR_COLUMNS: dict[str, str] = {"question+text": "question", "reference+text": "reference"}
INPUT_RECORD = "hybridscore_input"  # the config.json key of a pair model (absent = text)


def pair_firsts(table: pd.DataFrame, mode: InputMode, source: str) -> list[str] | None:
    """The first segment of every row's text pair (stripped), or None for ``text``.

    The one place a table and an input mode become what the tokenizer takes (with
    ``table["text"]``). A missing column, or an empty value in any row, is one message
    naming ``source``, the row (as a spreadsheet numbers it, the header being row 1; with
    its id where the table has one) and the column.
    """
    column = PAIR_COLUMNS.get(mode)
    if column is None:
        return None
    if column not in table.columns:
        raise HybridscoreError(
            f"{source}: missing column {column!r} (data.input: {mode} reads the {column} "
            "with every response)"
        )
    values = table[column].fillna("").astype(str).str.strip()
    empty = np.flatnonzero((values == "").to_numpy())
    if len(empty):
        i = int(empty[0])
        position = table.index[i]
        row = f"row {position + 2}" if isinstance(position, (int, np.integer)) else f"row {i + 2}"
        if "id" in table.columns:
            row += f" (id {table['id'].iloc[i]!r})"
        raise HybridscoreError(
            f"{source}: {row}, column {column!r}: empty, and data.input: {mode} needs it "
            f"on every row ({len(empty)} row(s) empty)"
        )
    return values.tolist()


def record_input_mode(config: Any, mode: InputMode) -> None:
    """Note ``mode`` in a model's config (saved into ``config.json`` by ``save_pretrained``).

    Only a pair mode is written: a folder without the key reads its texts alone, like every
    folder saved before ``data.input`` existed, and a ``text`` model's files stay as they were.
    """
    if mode != "text":
        setattr(config, INPUT_RECORD, mode)


def tokenize(tokenizer, texts: Sequence[str], firsts: Sequence[str] | None = None, **options):
    """The one tokenizer call of every model input: ``texts`` alone, or ``(first, text)`` pairs.

    ``options`` are the tokenizer's own (``truncation``, ``max_length``, ``padding``,
    ``return_tensors``). Without ``firsts`` the call is ``tokenizer(texts, **options)``.
    Truncating pairs keeps the response: the first segment (question or reference) is cut
    (``only_first``) as long as the response and the special tokens leave it at least one
    token; a response too long even for that is cut together with its first segment
    (``longest_first``: tokens go from the longer of the two until the pair fits).
    """
    texts = list(texts)
    if firsts is None:
        return tokenizer(texts, **options)
    firsts = list(firsts)
    if not options.get("truncation"):
        return tokenizer(firsts, texts, **options)
    limit = options.get("max_length") or tokenizer.model_max_length
    room = limit - tokenizer.num_special_tokens_to_add(pair=True)
    sizes = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    fits = [size < room for size in sizes]
    if all(fits) or not any(fits):
        strategy = "only_first" if all(fits) else "longest_first"
        return tokenizer(firsts, texts, **{**options, "truncation": strategy})
    padding = options.pop("padding", False)
    return_tensors = options.pop("return_tensors", None)
    merged: dict[str, list] = {}
    for strategy, wanted in (("only_first", True), ("longest_first", False)):
        rows = [i for i, fit in enumerate(fits) if fit == wanted]
        pairs = [firsts[i] for i in rows], [texts[i] for i in rows]
        part = tokenizer(*pairs, **{**options, "truncation": strategy})
        for key, values in part.items():
            column = merged.setdefault(key, [None] * len(texts))
            for i, value in zip(rows, values, strict=True):
                column[i] = value
    return tokenizer.pad(merged, padding=padding, return_tensors=return_tensors)


# --------------------------------------------------------------------------- model examples
@dataclass
class Examples:
    """Texts with label ids and, for distillation, the teacher's logits.

    ``firsts``: the first segment of each text pair (question or reference answer) for a
    pair ``data.input``; None = the texts alone.
    """

    texts: list[str]
    labels: list[int]
    teacher_logits: np.ndarray | None = None
    firsts: list[str] | None = None


def examples_from_table(
    table: pd.DataFrame, labels: list[str], source: str, input_mode: InputMode = "text"
) -> Examples:
    """Turn a stage table into texts + label ids (the id is the label's place in ``labels``),
    with the first segments ``input_mode`` pairs them with."""
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(table["label"]) - set(index))
    if unknown:
        raise HybridscoreError(f"{source}: labels {unknown} are not in labels.json {labels}")
    return Examples(
        texts=table["text"].tolist(),
        labels=[index[x] for x in table["label"]],
        firsts=pair_firsts(table, input_mode, source),
    )
