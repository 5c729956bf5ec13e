"""The one table shape between stages, its read/write helpers, and reading users' CSVs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from hybridscore.errors import HybridscoreError
from hybridscore.params import DataParams

REQUIRED_COLUMNS = ["id", "question_id", "text", "label", "source"]
OPTIONAL_COLUMNS = ["question", "reference", "label_rater2"]
TABLE_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_json(data: Any, path: str | os.PathLike[str]) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


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
    table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise HybridscoreError(f"{path}: missing column(s) {', '.join(missing)}")
    return table


def write_labels(labels: list[str], path: str | os.PathLike[str]) -> None:
    write_json({"labels": labels}, path)


def read_labels(path: str | os.PathLike[str]) -> list[str]:
    """The ordered label list (low → high) that fixes class ids for every model."""
    labels = read_json(path)["labels"]
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


# --------------------------------------------------------------------------- user sources
def _decode(path: Path, encoding: str) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        row = raw[: exc.start].count(b"\n")  # data row number (line 1 is the header)
        raise HybridscoreError(
            f"{path}: row {row}: not valid {encoding} text (byte {exc.start}); "
            f"re-save the file as {encoding} or set data.encoding"
        ) from None
    except LookupError:
        raise HybridscoreError(f"params data.encoding: unknown encoding {encoding!r}") from None


def read_source(params: DataParams) -> tuple[pd.DataFrame, list[str]]:
    """Read and validate the user's CSV; return it in table shape (+ ``split``) and the labels.

    Every problem raises one ``HybridscoreError`` naming the file, row and column.
    """
    path = Path(params.source)
    if not path.is_file():
        raise HybridscoreError(f"{path}: data source not found (params data.source)")
    try:
        frame = pd.read_csv(
            io.StringIO(_decode(path, params.encoding)), dtype=str, keep_default_na=False
        )
    except pd.errors.ParserError as exc:
        raise HybridscoreError(f"{path}: not a valid CSV: {exc}") from None
    except pd.errors.EmptyDataError:
        raise HybridscoreError(f"{path}: the file is empty") from None

    cols = params.columns
    wanted = {"text": cols.text, "label": cols.label}
    optional = {
        "id": cols.id,
        "question_id": cols.question_id,
        "question": cols.question,
        "reference": cols.reference,
        "label_rater2": cols.label_rater2,
        "split": cols.split,
    }
    for field, column in wanted.items():
        if column not in frame.columns:
            raise HybridscoreError(
                f"{path}: missing column {column!r} (params data.columns.{field}); "
                f"found: {', '.join(frame.columns)}"
            )
    # Optional columns left at their defaults may be absent; ones the user named must exist.
    defaults = type(cols)()
    for field, column in optional.items():
        if column is not None and column not in frame.columns:
            if column != getattr(defaults, field):
                raise HybridscoreError(
                    f"{path}: missing column {column!r} (params data.columns.{field})"
                )
            optional[field] = None
    if frame.empty:
        raise HybridscoreError(f"{path}: no data rows")

    table = pd.DataFrame(
        {"text": frame[cols.text].str.strip(), "label": frame[cols.label].str.strip()}
    )
    for field, column in optional.items():
        if column is not None:
            table[field] = frame[column].str.strip()

    def row_of(index: int) -> int:
        return index + 2  # 1-based line number in the file, after the header

    for field, column in (("text", cols.text), ("label", cols.label)):
        empty = table.index[table[field] == ""]
        if len(empty):
            raise HybridscoreError(
                f"{path}: row {row_of(empty[0])}, column {column!r}: empty {field} "
                f"({len(empty)} empty row(s) in all)"
            )
    if params.labels is not None:
        unknown = table.index[~table["label"].isin(params.labels)]
        if len(unknown):
            first = unknown[0]
            raise HybridscoreError(
                f"{path}: row {row_of(first)}, column {cols.label!r}: unknown label "
                f"{table.at[first, 'label']!r} (params data.labels: {params.labels})"
            )
        labels = list(params.labels)
    else:
        labels = sorted(table["label"].unique())
        if len(labels) < 2:
            raise HybridscoreError(f"{path}: column {cols.label!r} has fewer than two labels")
    if "split" in table:
        bad = table.index[~table["split"].isin(SPLITS)]
        if len(bad):
            raise HybridscoreError(
                f"{path}: row {row_of(bad[0])}, column {cols.split!r}: split must be one of "
                f"{list(SPLITS)}, got {table.at[bad[0], 'split']!r}"
            )
    if "id" in table:
        dupes = table.index[table["id"].duplicated()]
        if len(dupes):
            raise HybridscoreError(
                f"{path}: row {row_of(dupes[0])}, column {cols.id!r}: duplicate id "
                f"{table.at[dupes[0], 'id']!r}"
            )
    else:
        table["id"] = [f"row{row_of(i)}" for i in table.index]
    if "question_id" not in table:
        table["question_id"] = ""
    table["source"] = "human"
    return table, labels
