"""prepare on the real shared datasets (ASAP-SAS sets, SemEval-2013 SciEntsBank) through the
built-in sources, giving the row counts of ../shared/datasets/README.md; skipped where that
folder is absent."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SHARED_DATASETS, write_params

from hybridscore import prepare
from hybridscore.data import read_labels, read_table

ASAP = SHARED_DATASETS / "asap-sas"
SCIENTSBANK = SHARED_DATASETS / "semeval2013-scientsbank"
SPLITS = ("train", "val", "test")


def absent(folder: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not folder.exists(), reason=f"shared datasets absent: {folder} not found"
    )


def prepare_sizes(workspace: Path, data: dict) -> dict[str, int]:
    write_params(workspace, {"data": data})
    prepare.main([])
    return {s: len(read_table(f"data/prepared/{s}.csv")) for s in SPLITS}


@pytest.mark.parametrize(
    ("number", "rows"),
    [
        pytest.param(1, (1338, 334, 557), marks=absent(ASAP / "set1")),
        pytest.param(2, (1023, 255, 426), marks=absent(ASAP / "set2")),
        pytest.param(5, (1436, 359, 598), marks=absent(ASAP / "set5")),
        pytest.param(6, (1438, 359, 599), marks=absent(ASAP / "set6")),
    ],
)
def test_prepare_reads_asap_set_with_given_splits(
    workspace: Path, number: int, rows: tuple[int, int, int]
) -> None:
    sizes = prepare_sizes(workspace, {"source": f"asap-sas:{ASAP / f'set{number}'}"})
    assert sizes == dict(zip(SPLITS, rows, strict=True))
    val = read_table("data/prepared/val.csv")
    assert (val["label_rater2"] != "").all()
    assert set(val["label"]) <= {"0", "1", "2", "3"}
    assert read_labels("data/prepared/labels.json") == ["0", "1", "2", "3"]
    assert val["question"].iloc[0].startswith("[Question]")


@absent(SCIENTSBANK)
@pytest.mark.parametrize(
    ("split", "test_rows"), [("unseen-answers", 540), ("unseen-questions", 733)]
)
def test_prepare_reads_scientsbank_train_and_test_split(
    workspace: Path, split: str, test_rows: int
) -> None:
    sizes = prepare_sizes(workspace, {"source": f"semeval2013:{SCIENTSBANK}", "test_split": split})
    assert sizes["train"] + sizes["val"] == 4969  # val carved from the 4969 training answers
    assert sizes["test"] == test_rows
    assert read_labels("data/prepared/labels.json") == ["contradictory", "incorrect", "correct"]
    test = read_table("data/prepared/test.csv")
    assert (test["question"] != "").all() and (test["reference"] != "").all()
