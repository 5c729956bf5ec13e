"""Built-in data sources: public corpora read, in their published layouts, into source tables.

``data.source`` is a CSV path or one of two prefixed forms (``FORMS``). Each reader returns
the table ``read_source`` returns for a user's CSV (``text, label, id, question_id``,
the optional columns the corpus has, ``split``) and the ordered labels, and checks what a
user's CSV is checked for, naming the file and row. Files are read in sorted order, so the
same folder always gives the same table.
"""

from __future__ import annotations

import io
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

from hybridscore.data import SPLITS
from hybridscore.errors import HybridscoreError, warn
from hybridscore.params import DataParams

ASAP_SAS = "asap-sas"
SEMEVAL2013 = "semeval2013"
FORMS = (
    f"{ASAP_SAS}:PATH (an ASAP-SAS set folder: train.csv, val.csv, test.csv, item.txt) or "
    f"{SEMEVAL2013}:PATH (a SemEval-2013 Task 7 folder: train/*.xml, test/<split>/*.xml)"
)
_PREFIX = re.compile(r"[A-Za-z][\w.+-]+")  # two characters at least: ``C:`` is a drive

# --------------------------------------------------------------------------- source forms


def split_source(source: str) -> tuple[str | None, Path]:
    """``(prefix, path)`` of a ``data.source``: prefix ``None`` for a CSV path.

    A path that exists is a CSV path even with a colon in it; anything else that starts with
    ``word:`` is a mistyped prefix and is refused with the two forms listed.
    """
    prefix, colon, rest = source.partition(":")
    if colon and prefix in (ASAP_SAS, SEMEVAL2013):
        if not rest:
            raise HybridscoreError(
                f"params data.source {source!r}: names no folder after {prefix}:"
            )
        return prefix, Path(rest)
    if colon and _PREFIX.fullmatch(prefix) and not Path(source).exists():
        raise HybridscoreError(
            f"params data.source {source!r}: unknown source form {prefix + ':'!r}; "
            f"data.source is a CSV path, {FORMS}"
        )
    return None, Path(source)


def decode(path: Path, encoding: str) -> str:
    """The text of ``path``; an undecodable byte is one error naming the file and row."""
    raw = path.read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        row = raw[: exc.start].count(b"\n") + 1  # the file's line, as every row number here
        raise HybridscoreError(
            f"{path}: row {row}: not valid {encoding} text (byte {exc.start}); "
            f"re-save the file as {encoding} or set data.encoding"
        ) from None
    except LookupError:
        raise HybridscoreError(f"params data.encoding: unknown encoding {encoding!r}") from None


def read_csv_file(path: Path, encoding: str) -> pd.DataFrame:
    """A CSV file, every column as strings; a file that does not parse is one clear error."""
    try:
        return pd.read_csv(io.StringIO(decode(path, encoding)), dtype=str, keep_default_na=False)
    except pd.errors.ParserError as exc:
        raise HybridscoreError(f"{path}: not a valid CSV: {exc}") from None
    except pd.errors.EmptyDataError:
        raise HybridscoreError(f"{path}: the file is empty") from None


def _folder(path: Path, prefix: str) -> Path:
    if not path.is_dir():
        raise HybridscoreError(
            f"{path}: data source folder not found (params data.source {prefix}:)"
        )
    return path


def _duplicate(seen: dict[str, str], key: str, where: str) -> None:
    """Record where ``key`` (an id) was read; a second time is an error naming both places."""
    if key in seen:
        raise HybridscoreError(f"{where}: duplicate id {key!r} (first in {seen[key]})")
    seen[key] = where


# --------------------------------------------------------------------------- ASAP-SAS
ASAP_SPLITS = ("train", "val", "test")
ASAP_COLUMNS = {  # as published: the test file has its own column order and no second rater
    "train": ("Id", "EssaySet", "Score1", "Score2", "EssayText"),
    "val": ("Id", "EssaySet", "Score1", "Score2", "EssayText"),
    "test": ("Id", "EssaySet", "EssayText", "Score1"),
}
_SCORE = re.compile(r"\d+")


def _read_asap_file(path: Path, split: str, encoding: str) -> pd.DataFrame:
    """One split file, checked: its columns, non-empty texts, whole-number scores."""
    if not path.is_file():
        raise HybridscoreError(
            f"{path}: not found (an ASAP-SAS set folder holds {', '.join(ASAP_SPLITS)} .csv)"
        )
    frame = read_csv_file(path, encoding)
    missing = [c for c in ASAP_COLUMNS[split] if c not in frame.columns]
    if missing:
        raise HybridscoreError(
            f"{path}: missing column(s) {', '.join(map(repr, missing))} (ASAP-SAS {split}.csv "
            f"has {', '.join(ASAP_COLUMNS[split])}); found: {', '.join(frame.columns)}"
        )
    if frame.empty:
        raise HybridscoreError(f"{path}: no data rows")
    frame = frame.apply(lambda column: column.str.strip())
    for column in ("Id", "EssayText", "Score1"):
        empty = frame.index[frame[column] == ""]
        if len(empty):
            raise HybridscoreError(
                f"{path}: row {empty[0] + 2}, column {column!r}: empty value "
                f"({len(empty)} empty row(s) in all)"
            )
    for column in ("Score1", "Score2"):
        if column in frame:
            bad = frame.index[~frame[column].str.fullmatch(_SCORE) & (frame[column] != "")]
            if len(bad):
                raise HybridscoreError(
                    f"{path}: row {bad[0] + 2}, column {column!r}: score "
                    f"{frame.at[bad[0], column]!r} is not a whole number"
                )
    return frame


def read_asap_sas(folder: Path, encoding: str = "utf-8") -> tuple[pd.DataFrame, list[str]]:
    """One ASAP-SAS set folder: its published train/val/test splits, ``Score2`` as the second
    rater, ``item.txt`` (if there) as the question.

    Labels are the ``Score1`` values that occur, numerically (``0`` to ``2`` or ``3``): the
    scale QWK is computed on. Ids are ``asap-<Id>``, question ids ``asap-set<EssaySet>``.
    """
    folder = _folder(folder, ASAP_SAS)
    seen: dict[str, str] = {}
    parts = []
    for split in ASAP_SPLITS:
        path = folder / f"{split}.csv"
        frame = _read_asap_file(path, split, encoding)
        for index, key in frame["Id"].items():
            _duplicate(seen, key, f"{path}: row {index + 2}, column 'Id'")
        part = pd.DataFrame(
            {
                "text": frame["EssayText"],
                "label": frame["Score1"],
                "id": "asap-" + frame["Id"],
                "question_id": "asap-set" + frame["EssaySet"],
                "label_rater2": frame.get("Score2", ""),
                "split": split,
            }
        )
        part["where"] = [f"{path}: row {index + 2}" for index in frame.index]
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    labels = sorted(table["label"].unique(), key=int)
    if len(labels) < 2:
        raise HybridscoreError(f"{folder}: fewer than two scores in column 'Score1'")
    stray = table.index[(table["label_rater2"] != "") & ~table["label_rater2"].isin(labels)]
    if len(stray):
        raise HybridscoreError(
            f"{table.at[stray[0], 'where']}, column 'Score2': score "
            f"{table.at[stray[0], 'label_rater2']!r} is not one of the Score1 scores {labels}"
        )
    item = folder / "item.txt"
    if item.is_file():
        table["question"] = decode(item, encoding).strip()
    return table.drop(columns="where"), labels


# --------------------------------------------------------------------------- SemEval-2013
# The 3-way labels, low to high, for QWK: "incorrect" pools the 5-way partially correct,
# irrelevant and off-topic answers, some of which carry part of the reference's content;
# "contradictory" answers assert the opposite of it, the furthest from correct. The same
# order as the embedded sample's params (data/sample/scientsbank.csv).
SEMEVAL_LABELS = ["contradictory", "incorrect", "correct"]
SEMEVAL_TEST_SPLITS = ("unseen-answers", "unseen-questions", "unseen-domains")


def _words(text: str | None) -> str:
    return " ".join((text or "").split())


def _xml_files(folder: Path, what: str) -> list[Path]:
    files = sorted(folder.glob("*.xml"))
    if not files:
        raise HybridscoreError(f"{folder}: no .xml files ({what})")
    return files


def _read_question(path: Path, split: str, seen: dict[str, str]) -> list[dict[str, str]]:
    """The rows of one question file (one per ``studentAnswer``), checked."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise HybridscoreError(f"{path}: not valid XML ({exc})") from None
    question_id, answers = root.get("id"), root.find("studentAnswers")
    if root.tag != "question" or not question_id or answers is None:
        raise HybridscoreError(
            f"{path}: not a SemEval-2013 question file (expected <question id=...> with "
            "<questionText>, <referenceAnswers> and <studentAnswers>)"
        )
    references = root.find("referenceAnswers")
    reference = _words(references[0].text) if references is not None and len(references) else ""
    rows = []
    for number, answer in enumerate(answers, start=1):
        answer_id = answer.get("id")
        if not answer_id:
            raise HybridscoreError(f"{path}: studentAnswer number {number} has no id")
        where = f"{path}: studentAnswer {answer_id!r}"
        _duplicate(seen, answer_id, where)
        accuracy, text = answer.get("accuracy"), _words(answer.text)
        if accuracy is None:
            raise HybridscoreError(f"{where}: no accuracy attribute (the gold label)")
        if accuracy not in SEMEVAL_LABELS:
            raise HybridscoreError(
                f"{where}: accuracy {accuracy!r} is not a 3-way label {SEMEVAL_LABELS}"
            )
        if not text:
            raise HybridscoreError(f"{where}: empty answer text")
        rows.append(
            {
                "text": text,
                "label": accuracy,
                "id": answer_id,
                "question_id": question_id,
                "question": _words(root.findtext("questionText")),
                "reference": reference,
                "split": split,
            }
        )
    return rows


def read_semeval2013(
    folder: Path, test_split: str = "unseen-answers"
) -> tuple[pd.DataFrame, list[str]]:
    """A SemEval-2013 Task 7 corpus (SciEntsBank or Beetle, 3-way): ``train/*.xml`` as train,
    ``test/<test_split>/*.xml`` as test (``prepare`` carves val out of train).

    The question is ``questionText``, the reference its first ``referenceAnswer``; whitespace
    is normalised, as in the embedded sample.
    """
    folder = _folder(folder, SEMEVAL2013)
    test = folder / "test" / test_split
    if not test.is_dir():
        found = sorted(p.name for p in (folder / "test").glob("*") if p.is_dir())
        raise HybridscoreError(
            f"{test}: test split not found (params data.test_split); "
            f"found: {', '.join(found) or 'none'}"
        )
    seen: dict[str, str] = {}
    rows = [
        row
        for split, part in (("train", folder / "train"), ("test", test))
        for path in _xml_files(part, f"SemEval-2013 {split} questions")
        for row in _read_question(path, split, seen)
    ]
    return pd.DataFrame(rows), list(SEMEVAL_LABELS)


def read_builtin(
    prefix: str, folder: Path, encoding: str, test_split: str
) -> tuple[pd.DataFrame, list[str]]:
    """The table and labels of a prefixed ``data.source``."""
    if prefix == ASAP_SAS:
        return read_asap_sas(folder, encoding)
    return read_semeval2013(folder, test_split)


# --------------------------------------------------------------------------- user sources
def _number(label: str) -> float | None:
    try:
        return float(label)
    except ValueError:
        return None


def inferred_labels(labels: pd.Series, where: str) -> list[str]:
    """The ordered label list of a column when params give none: numerically for numeric
    scores (``2`` before ``10``), else alphabetically. Two spellings of one number (``1`` and
    ``1.0``) would become two classes, so they are refused."""
    found = sorted(labels.unique())
    if len(found) < 2:
        raise HybridscoreError(f"{where} has fewer than two labels")
    numbers = {label: _number(label) for label in found}
    if any(value is None for value in numbers.values()):
        return found
    by_value: dict[float, list[str]] = {}
    for label, value in numbers.items():
        by_value.setdefault(value, []).append(label)
    clash = next((spellings for spellings in by_value.values() if len(spellings) > 1), None)
    if clash:
        raise HybridscoreError(
            f"{where}: labels {' and '.join(map(repr, clash))} are the same score written two "
            "ways; write every score one way, or list the labels in params data.labels"
        )
    return sorted(found, key=lambda label: numbers[label])


def read_source(params: DataParams) -> tuple[pd.DataFrame, list[str]]:
    """Read and validate ``data.source``; return it in table shape (+ ``split``) and the labels.

    A CSV path is read with ``data.columns`` and ``data.labels``; a prefixed source
    (``FORMS``) brings its own columns and labels. Every problem raises one
    ``HybridscoreError`` naming the file, row and column.
    """
    prefix, path = split_source(params.source)
    warn_if_untracked(params, path)
    if prefix is not None:
        table, labels = read_builtin(prefix, path, params.encoding, params.test_split)
        if params.labels is not None and list(params.labels) != labels:
            warn(
                "prepare",
                f"params data.labels {list(params.labels)} not used: {prefix}: sources "
                f"take their labels from the data ({labels})",
            )
        table["source"] = "human"
        return table, labels
    return read_csv_source(params, path)


def warn_if_untracked(params: DataParams, path: Path) -> None:
    """Under DVC (``DVC_STAGE`` set), say so when ``data.path``, the dep dvc.yaml tracks, does
    not hold what the source reads: dvc would not rerun ``prepare`` when that data changes."""
    tracked, read = Path(os.path.normpath(params.path)), Path(os.path.normpath(path))
    if "DVC_STAGE" in os.environ and tracked != read and tracked not in read.parents:
        warn(
            "prepare",
            f"params data.path {params.path!r} does not hold {str(path)!r} (read by "
            f"data.source): dvc tracks data.path, so set it to {str(path)!r}",
        )


def read_csv_source(params: DataParams, path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Read and validate the user's CSV at ``path`` with ``data.columns`` and ``data.labels``."""
    if not path.is_file():
        raise HybridscoreError(f"{path}: data source not found (params data.source)")
    frame = read_csv_file(path, params.encoding)

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
        labels = inferred_labels(table["label"], f"{path}: column {cols.label!r}")
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
