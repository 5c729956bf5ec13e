"""prepare: validation of user CSVs (file/row/column in the message) and the splits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import sample_rows, write_params

from hybridscore import prepare
from hybridscore.data import read_labels, read_table
from hybridscore.errors import HybridscoreError
from hybridscore.params import load_params

OUTPUTS = ["train.csv", "val.csv", "test.csv", "labels.json"]


def run_prepare() -> None:
    """The stage on the default paths (its argparse defaults), raising errors instead of exiting."""
    args = prepare.build_parser().parse_args([])
    prepare.run(load_params(), args.out_dir, args.metrics)


def test_given_splits_and_carved_val(workspace: Path) -> None:
    run_prepare()
    source = pd.read_csv("data/source.csv", dtype=str)
    tables = {name: read_table(f"data/prepared/{name}.csv") for name in ("train", "val", "test")}
    assert set(tables["test"]["id"]) == set(source[source["split"] == "test"]["id"])
    assert set(tables["train"]["id"]).isdisjoint(tables["val"]["id"])
    assert len(tables["train"]) + len(tables["val"]) == (source["split"] == "train").sum()
    assert set(tables["val"]["label"]) == {"contradictory", "incorrect", "correct"}  # stratified
    assert read_labels("data/prepared/labels.json") == ["contradictory", "incorrect", "correct"]
    assert (tables["train"]["source"] == "human").all()


def test_custom_columns_without_split_or_ids(workspace: Path) -> None:
    rows = sample_rows(per_label=12)
    pd.DataFrame({"answer": rows["text"], "score": rows["label"]}).to_csv("mine.csv", index=False)
    write_params(
        workspace,
        {
            "data": {
                "source": "mine.csv",
                "labels": None,
                "columns": {
                    "text": "answer",
                    "label": "score",
                    "id": None,
                    "question_id": None,
                    "question": None,
                    "reference": None,
                    "split": None,
                },
            }
        },
    )
    run_prepare()
    sizes = {n: len(read_table(f"data/prepared/{n}.csv")) for n in ("train", "val", "test")}
    assert sum(sizes.values()) == len(rows)
    assert sizes["test"] == pytest.approx(0.2 * len(rows), abs=2)
    assert read_labels("data/prepared/labels.json") == sorted(set(rows["label"]))


def test_same_seed_same_split(workspace: Path) -> None:
    run_prepare()
    first = Path("data/prepared/val.csv").read_text()
    run_prepare()
    assert Path("data/prepared/val.csv").read_text() == first


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (
            lambda df: df.drop(columns=["text"]),
            r"missing column 'text' \(params data.columns.text\)",
        ),
        (
            lambda df: df.assign(text=["  ", *list(df["text"][1:])]),
            r"row 2, column 'text': empty text",
        ),
        (
            lambda df: df.assign(label=[*list(df["label"][:3]), "great", *list(df["label"][4:])]),
            r"row 5, column 'label': unknown label 'great'",
        ),
        (
            lambda df: df.assign(split=["train"] * (len(df) - 1) + ["dev"]),
            r"column 'split': split must be",
        ),
        (lambda df: df.assign(id=["same"] * len(df)), r"row 3, column 'id': duplicate id"),
    ],
)
def test_bad_csv_names_file_row_column(workspace: Path, corrupt, expected: str) -> None:
    frame = pd.read_csv("data/source.csv", dtype=str, keep_default_na=False)
    corrupt(frame).to_csv("data/source.csv", index=False)
    with pytest.raises(HybridscoreError, match=expected) as info:
        run_prepare()
    assert "data/source.csv" in str(info.value)
    assert not any(Path("data/prepared", name).exists() for name in OUTPUTS)


def test_bad_encoding_names_row(workspace: Path) -> None:
    lines = Path("data/source.csv").read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b",", b",\xe9", 1)  # latin-1 byte on line 4 (data row 3)
    Path("data/source.csv").write_bytes(b"".join(lines))
    # "row N" is the file's line N in every message (the header is row 1)
    with pytest.raises(HybridscoreError, match=r"row 4: not valid utf-8"):
        run_prepare()
    assert not Path("data/prepared").exists()


def test_missing_source(workspace: Path) -> None:
    write_params(workspace, {"data": {"source": "nope.csv"}})
    with pytest.raises(HybridscoreError, match=r"nope.csv: data source not found"):
        run_prepare()


def test_every_row_in_test_is_one_message(workspace: Path) -> None:
    frame = pd.read_csv("data/source.csv", dtype=str, keep_default_na=False)
    frame.assign(split="test").to_csv("data/source.csv", index=False)
    done = subprocess.run(
        [sys.executable, "-m", "hybridscore.prepare"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "no training rows" in done.stderr and "test 60" in done.stderr
    assert "Traceback" not in done.stderr
    assert not Path("data/prepared").exists()


def test_a_tiny_data_set_and_a_huge_answer_are_named(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = pd.read_csv("data/source.csv", dtype=str, keep_default_na=False)
    frame = frame.groupby("split").head(3).reset_index(drop=True)
    frame.loc[0, "text"] = "word " * 200_000  # a 1 MB answer
    frame.to_csv("data/source.csv", index=False)
    run_prepare()
    err = capsys.readouterr().err
    assert "warning: data/source.csv: fewer than 5 rows of some label in a split" in err
    assert "1 text(s) over 5000 characters (the longest: 999999)" in err


def numeric_labels(workspace: Path, labels: list[str]) -> None:
    rows = sample_rows(per_label=12)
    scores = [labels[i % len(labels)] for i in range(len(rows))]
    pd.DataFrame({"text": rows["text"], "label": scores}).to_csv("scores.csv", index=False)
    write_params(workspace, {"data": {"source": "scores.csv", "labels": None}})


def test_numeric_labels_are_ordered_as_numbers(workspace: Path) -> None:
    numeric_labels(workspace, ["10", "2", "0"])
    run_prepare()
    assert read_labels("data/prepared/labels.json") == ["0", "2", "10"]


def test_one_score_written_two_ways_is_refused(workspace: Path) -> None:
    numeric_labels(workspace, ["1", "1.0", "0"])
    with pytest.raises(HybridscoreError, match=r"labels '1' and '1.0' are the same score"):
        run_prepare()
    assert not Path("data/prepared").exists()
