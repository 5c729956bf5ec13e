"""``hybridscore predict``: score a CSV of responses with a saved model folder.

    hybridscore predict --model models/student input.csv -o scored.csv

A model trained with a pair ``data.input`` (its folder records it) also reads each row's
``question`` (``question+text``) or ``reference`` (``reference+text``) column.
From Python, use :class:`hybridscore.scoring.Scorer`.
"""

from __future__ import annotations

import argparse
import codecs
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from hybridscore.data import atomic_path, pair_firsts
from hybridscore.errors import HybridscoreError, run_stage
from hybridscore.scoring import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_LENGTH,
    PREDICTED_COLUMN,
    PROB_PREFIX,
    Scorer,
)


def _reading_encoding(encoding: str) -> str:
    """Read UTF-8 as ``utf-8-sig`` so a spreadsheet's byte-order mark does not rename column 1."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise HybridscoreError(f"--encoding: unknown encoding {encoding!r}") from None
    return "utf-8-sig" if name == "utf-8" else encoding


def check_encoding(path: Path, encoding: str, shown_as: str | None = None) -> int:
    """Decode the whole file in blocks (streaming); return its line count.

    A byte that does not decode raises one error naming the line, before any scoring.
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    lines, offset = 0, 0
    with path.open("rb") as handle:
        while True:
            block = handle.read(1 << 20)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                line = lines + block[: max(exc.start, 0)].count(b"\n") + 1
                raise HybridscoreError(
                    f"{path}: line {line}: not valid {shown_as or encoding} text "
                    f"(byte {offset + exc.start}); re-save the file as UTF-8 or pass --encoding"
                ) from None
            if not block:
                return lines
            lines += block.count(b"\n")
            offset += len(block)


def _read_csv(path: Path, encoding: str, **options) -> Iterator[pd.DataFrame]:
    """``pd.read_csv`` (all columns as text) with its errors turned into one clear message."""
    try:
        result = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding, **options)
        yield from [result] if isinstance(result, pd.DataFrame) else result
    except pd.errors.EmptyDataError:
        raise HybridscoreError(f"{path}: the file is empty") from None
    except pd.errors.ParserError as exc:
        raise HybridscoreError(f"{path}: not a valid CSV: {exc}") from None


class ScoringInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``score_csv``: how far it got (its output was not written)."""

    def __init__(self, rows: int, total: int) -> None:
        super().__init__(f"{rows} of about {total} rows were scored")
        self.rows, self.total = rows, total


def check_output(
    input_path: str | os.PathLike[str], output_path: str | os.PathLike[str], overwrite: bool
) -> None:
    """Refuse an output that cannot be written, or that is the input (unless ``overwrite``).

    Checked before the model is loaded: a folder, a path under a file or an unwritable folder
    each get one message naming the path, not a traceback after minutes of scoring.
    """
    out = Path(output_path)
    if out.is_dir():
        raise HybridscoreError(f"{out}: is a folder; -o takes a file name, e.g. {out}/scored.csv")
    folder = out.parent
    while not folder.exists():  # the nearest existing folder (the missing ones are made)
        folder = folder.parent
    if not folder.is_dir():
        raise HybridscoreError(f"{out}: cannot write there: {folder} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise HybridscoreError(
            f"{out}: cannot write there: folder {folder}: {exc.strerror}"
        ) from None
    source = Path(input_path)
    if not overwrite and out.exists() and source.exists() and os.path.samefile(source, out):
        raise HybridscoreError(
            f"{out}: is the input file {source}; score into another file, or pass --overwrite "
            "to replace the input with its scored copy (written once every row is scored)"
        )


def score_csv(
    scorer: Scorer,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    text_column: str = "text",
    encoding: str = "utf-8",
    chunk_rows: int = 4096,
    progress: bool = True,
    overwrite: bool = False,
) -> int:
    """Score every row of a CSV into ``output_path`` (atomically); return the row count.

    The output keeps all input columns and adds ``predicted_label`` and ``prob_<label>``; the
    input is read in blocks of ``chunk_rows``; a pair model (``scorer.pair_column``) also
    reads that column, which must be there and filled on every row. Row numbers in errors
    count the header as row 1 (as a spreadsheet shows them). On any error, or Ctrl-C
    (``ScoringInterrupted``), no output file is left behind. ``output_path`` may be the input
    only with ``overwrite``.
    """
    from tqdm import tqdm

    input_path = Path(input_path)
    if not input_path.is_file():
        raise HybridscoreError(f"{input_path}: input file not found")
    check_output(input_path, output_path, overwrite)
    read_as = _reading_encoding(encoding)
    lines = check_encoding(input_path, read_as, shown_as=encoding)
    header = next(_read_csv(input_path, read_as, nrows=0))
    _check_columns(input_path, header, text_column, scorer.labels)
    pair_firsts(header, scorer.input_mode, str(input_path))  # the column a pair model reads
    rows = 0
    try:
        with (
            atomic_path(output_path) as tmp,
            tqdm(total=max(lines - 1, 1), unit="row", disable=not progress, file=sys.stderr) as bar,
        ):
            for chunk in _read_csv(input_path, read_as, chunksize=chunk_rows):
                texts = chunk[text_column].str.strip()
                empty = np.flatnonzero((texts == "").to_numpy())
                if len(empty):
                    raise HybridscoreError(
                        f"{input_path}: row {rows + empty[0] + 2}, column {text_column!r}: "
                        "empty text"
                    )
                firsts = pair_firsts(chunk, scorer.input_mode, str(input_path))
                result = scorer.predict(texts.tolist(), firsts)
                result.index = chunk.index
                pd.concat([chunk, result], axis=1).to_csv(
                    tmp, mode="a" if rows else "w", header=rows == 0, index=False, encoding="utf-8"
                )
                rows += len(chunk)
                bar.total = max(bar.total, rows)  # quoted multi-line fields make lines != rows
                bar.update(len(chunk))
            if rows == 0:
                raise HybridscoreError(f"{input_path}: no data rows (only a header)")
    except KeyboardInterrupt:
        raise ScoringInterrupted(rows, max(lines - 1, rows)) from None
    return rows


def _check_columns(path: Path, header: pd.DataFrame, text_column: str, labels: list[str]) -> None:
    if text_column not in header.columns:
        raise HybridscoreError(
            f"{path}: missing column {text_column!r} (--text-column); "
            f"found: {', '.join(map(str, header.columns))}"
        )
    added = [PREDICTED_COLUMN, *(f"{PROB_PREFIX}{label}" for label in labels)]
    clash = [c for c in added if c in header.columns]
    if clash:
        raise HybridscoreError(
            f"{path}: already has output column(s) {clash}; rename them or score the original file"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hybridscore predict",
        description="Score a CSV of responses with a saved model (PyTorch or ONNX folder).",
    )
    parser.add_argument("input", help="CSV file with one response per row")
    parser.add_argument("-o", "--output", required=True, help="where to write the scored CSV")
    parser.add_argument(
        "--model", default="models/student", help="model folder (default: %(default)s)"
    )
    parser.add_argument("--text-column", default="text", help="column holding the responses")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--max-length", type=int, default=DEFAULT_MAX_LENGTH, help="tokens per text"
    )
    parser.add_argument(
        "--onnx-file",
        default=None,
        help="ONNX file in the model folder (default: model.int8.onnx, then model.onnx)",
    )
    parser.add_argument("--pytorch", action="store_true", help="ignore ONNX files, run PyTorch")
    parser.add_argument(
        "--device", default="cpu", help="PyTorch models: cpu, cuda, or auto (a GPU if present)"
    )
    parser.add_argument("--encoding", default="utf-8", help="input file encoding")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads, at least 1 (default: all cores)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="allow -o to be the input file (replaced once every row is scored)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    def run() -> None:
        check_output(args.input, args.output, args.overwrite)  # before minutes of loading
        existed = Path(args.output).exists()
        try:
            scorer = Scorer.load(
                args.model,
                onnx_file=args.onnx_file,
                prefer_onnx=not args.pytorch,
                max_length=args.max_length,
                batch_size=args.batch_size,
                threads=args.threads,
                device=args.device,
            )
            rows = score_csv(
                scorer,
                args.input,
                args.output,
                text_column=args.text_column,
                encoding=args.encoding,
                progress=not args.no_progress,
                overwrite=args.overwrite,
            )
        except KeyboardInterrupt as exc:
            done = str(exc) if isinstance(exc, ScoringInterrupted) else "no row was scored"
            kept = f"the previous {args.output} is kept as it was" if existed else "no file made"
            print(
                f"hybridscore predict: interrupted: nothing written to {args.output} "
                f"({done}; {kept})",
                file=sys.stderr,
            )
            sys.exit(130)
        print(f"scored {rows} rows with {scorer.source} -> {args.output}", file=sys.stderr)

    run_stage("predict", run)


if __name__ == "__main__":
    main()
