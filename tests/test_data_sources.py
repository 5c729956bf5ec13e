"""Built-in sources (``asap-sas:`` and ``semeval2013:``) on made-up fixtures in the published
layouts: what they read, that ``prepare`` keeps the published splits, byte for byte the same on
every run, and one clear error naming file and row for each kind of bad input."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, write_params

from hybridscore import prepare
from hybridscore.data import read_labels, read_table
from hybridscore.errors import HybridscoreError
from hybridscore.params import DataParams, load_params
from hybridscore.sources import FORMS, SEMEVAL_LABELS, read_source

FIXTURES = Path(__file__).parent / "fixtures"
ASAP = FIXTURES / "asap-sas" / "set9"
SEMEVAL = FIXTURES / "semeval2013"
SPLITS = ("train", "val", "test")


def asap_copy(tmp_path: Path, edit: Callable[[str, pd.DataFrame], pd.DataFrame]) -> Path:
    """A copy of the ASAP fixture with ``edit(split, frame)`` applied to each split file."""
    folder = tmp_path / "asap"
    shutil.copytree(ASAP, folder)
    for split in SPLITS:
        path = folder / f"{split}.csv"
        edit(split, pd.read_csv(path, dtype=str, keep_default_na=False)).to_csv(path, index=False)
    return folder


def semeval_copy(tmp_path: Path, file: str = "", old: str = "", new: str = "") -> Path:
    """A copy of the SemEval fixture with ``old`` replaced by ``new`` in ``file``."""
    folder = tmp_path / "semeval"
    shutil.copytree(SEMEVAL, folder)
    if file:
        path = folder / file
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, new), encoding="utf-8")
    return folder


def prepared(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def run_prepare(out: str) -> dict[str, bytes]:
    prepare.main(["--out-dir", out, "--metrics", f"{out}.json"])
    return prepared(Path(out))


# --------------------------------------------------------------------------- ASAP-SAS
def test_asap_sas_folder_gives_published_splits_rater2_and_question() -> None:
    table, labels = read_source(DataParams(source=f"asap-sas:{ASAP}"))
    assert labels == ["0", "1", "2"]  # the scores that occur
    assert table["split"].value_counts().to_dict() == {"train": 12, "test": 6, "val": 5}
    assert table["id"].iloc[0] == "asap-101" and set(table["question_id"]) == {"asap-set9"}
    assert table["question"].iloc[0].startswith("[Question]:\nA class grew bean plants")
    rater2 = table.set_index("split")["label_rater2"]
    assert (rater2["test"] == "").all() and (rater2[["train", "val"]] != "").all()
    assert table.at[3, "label_rater2"] == "1" and table.at[3, "label"] == "2"  # Id 104
    assert (table["source"] == "human").all() and "reference" not in table


def test_asap_sas_labels_are_ordered_numerically_and_item_txt_is_optional(
    tmp_path: Path,
) -> None:
    ten = {"1": "10"}  # the second rater's 1s too, or they are refused
    folder = asap_copy(tmp_path, lambda _, f: f.replace({"Score1": ten, "Score2": ten}))
    (folder / "item.txt").unlink()
    table, labels = read_source(DataParams(source=f"asap-sas:{folder}"))
    assert labels == ["0", "2", "10"]
    assert "question" not in table


def test_prepare_keeps_asap_splits_and_takes_the_source_labels(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_params(workspace, {"data": {"source": f"asap-sas:{ASAP}"}})
    files = run_prepare("one")
    assert {s: len(read_table(f"one/{s}.csv")) for s in SPLITS} == {
        "train": 12,
        "val": 5,
        "test": 6,
    }
    assert read_labels("one/labels.json") == ["0", "1", "2"]
    assert "params data.labels ['contradictory', 'incorrect', 'correct'] not used" in (
        capsys.readouterr().err
    )
    assert run_prepare("two") == files  # the same folder, byte for byte the same splits


def test_asap_to_csv_script_is_the_same_reader(workspace: Path) -> None:
    """The script's CSV, prepared as a user's CSV, gives the bytes ``asap-sas:`` gives."""
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "asap_to_csv.py"), "9", str(ASAP.parent)],
        capture_output=True,
        text=True,
        check=True,
    )
    Path("asap.csv").write_text(done.stdout, encoding="utf-8")
    columns = {"reference": None, "label_rater2": "label_rater2"}
    write_params(workspace, {"data": {"source": "asap.csv", "labels": None, "columns": columns}})
    via_csv = run_prepare("csv")
    write_params(workspace, {"data": {"source": f"asap-sas:{ASAP}", "labels": None}})
    assert run_prepare("builtin") == via_csv


def missing_score2(split: str, frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns="Score2") if split == "train" else frame


def set_cell(split: str, row: int, column: str, value: str) -> Callable:
    def edit(name: str, frame: pd.DataFrame) -> pd.DataFrame:
        if name == split:
            frame.loc[row, column] = value
        return frame

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (missing_score2, r"train.csv: missing column\(s\) 'Score2' \(ASAP-SAS train.csv has Id"),
        (set_cell("val", 1, "Score1", "two"), r"val.csv: row 3, column 'Score1': score 'two' is"),
        (set_cell("test", 0, "EssayText", "  "), r"test.csv: row 2, column 'EssayText': empty"),
        (set_cell("val", 0, "Id", "101"), r"val.csv: row 2, column 'Id': duplicate id '101' \("),
        (set_cell("train", 4, "Score2", "3"), r"train.csv: row 6, column 'Score2': score '3' is"),
    ],
)
def test_bad_asap_sas_folders_name_file_and_row(
    tmp_path: Path, edit: Callable, expected: str
) -> None:
    folder = asap_copy(tmp_path, edit)
    with pytest.raises(HybridscoreError, match=expected) as info:
        read_source(DataParams(source=f"asap-sas:{folder}"))
    assert str(folder) in str(info.value)


def test_asap_sas_missing_file_or_folder(tmp_path: Path) -> None:
    with pytest.raises(HybridscoreError, match="data source folder not found"):
        read_source(DataParams(source=f"asap-sas:{tmp_path / 'nope'}"))
    folder = asap_copy(tmp_path, lambda _, f: f)
    (folder / "test.csv").unlink()
    with pytest.raises(HybridscoreError, match=r"test.csv: not found \(an ASAP-SAS set folder"):
        read_source(DataParams(source=f"asap-sas:{folder}"))


# --------------------------------------------------------------------------- SemEval-2013
def test_semeval2013_folder_gives_train_and_the_chosen_test_split() -> None:
    table, labels = read_source(DataParams(source=f"semeval2013:{SEMEVAL}"))
    assert labels == SEMEVAL_LABELS == ["contradictory", "incorrect", "correct"]
    assert table["split"].value_counts().to_dict() == {"train": 12, "test": 5}
    first = table.iloc[0]  # EL-bulb-2.xml sorts before MX-float-1.xml
    assert (first["id"], first["question_id"], first["label"]) == (
        "EL.bulb2.1.1",
        "EL_bulb2",
        "correct",
    )
    assert first["question"] == "The bulb lights when the switch is closed. Why?"
    assert first["reference"] == "Closing the switch completes the circuit."
    by_id = table.set_index("id")
    assert by_id.at["MX.float1.2.1", "text"] == "It is lighter than the same amount of water."
    assert by_id.at["MX.float1.2.1", "reference"] == "The wood is less dense than water."
    unseen, _ = read_source(
        DataParams(source=f"semeval2013:{SEMEVAL}", test_split="unseen-questions")
    )
    assert list(unseen.loc[unseen["split"] == "test", "question_id"].unique()) == ["WX_rain3"]


def test_prepare_carves_val_from_semeval_train_the_same_way_every_time(
    workspace: Path, tmp_path: Path
) -> None:
    """Files written in another order (another directory listing) give the same bytes."""
    shuffled = tmp_path / "shuffled"
    for path in sorted(SEMEVAL.rglob("*.xml"), reverse=True):
        target = shuffled / path.relative_to(SEMEVAL)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    write_params(workspace, {"data": {"source": f"semeval2013:{SEMEVAL}"}})
    files = run_prepare("one")
    sizes = {s: len(read_table(f"one/{s}.csv")) for s in SPLITS}
    assert sizes == {"train": 9, "val": 3, "test": 5}
    assert read_labels("one/labels.json") == SEMEVAL_LABELS
    write_params(workspace, {"data": {"source": f"semeval2013:{shuffled}"}})
    assert run_prepare("two") == files


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        ("train/MX-float-1.xml", "</question>", "", r"MX-float-1.xml: not valid XML \("),
        (
            "test/unseen-answers/EL-bulb-2.xml",
            '"EL.bulb2.8.1" accuracy="incorrect"',
            '"EL.bulb2.8.1"',
            r"EL-bulb-2.xml: studentAnswer 'EL.bulb2.8.1': no accuracy attribute",
        ),
        (
            "train/EL-bulb-2.xml",
            'accuracy="incorrect">The battery',
            'accuracy="partially_correct_incomplete">The battery',
            r"studentAnswer 'EL.bulb2.3.1': accuracy 'partially_correct_incomplete' is not a",
        ),
        (
            "train/EL-bulb-2.xml",
            '"EL.bulb2.4.1"',
            '"EL.bulb2.3.1"',
            r"EL-bulb-2.xml: studentAnswer 'EL.bulb2.3.1': duplicate id 'EL.bulb2.3.1' \(first",
        ),
        (
            "train/EL-bulb-2.xml",
            "The battery is new.",
            "  ",
            r"EL-bulb-2.xml: studentAnswer 'EL.bulb2.3.1': empty answer text",
        ),
        (
            "train/EL-bulb-2.xml",
            "studentAnswers>",  # every occurrence: <answers>...</answers>
            "answers>",
            r"EL-bulb-2.xml: not a SemEval-2013 question file",
        ),
    ],
)
def test_bad_semeval2013_folders_name_the_file_and_answer(
    tmp_path: Path, file: str, old: str, new: str, expected: str
) -> None:
    folder = semeval_copy(tmp_path, file, old, new)
    with pytest.raises(HybridscoreError, match=expected) as info:
        read_source(DataParams(source=f"semeval2013:{folder}"))
    assert str(folder / file) in str(info.value)


def test_semeval2013_missing_test_split_lists_the_ones_there(tmp_path: Path) -> None:
    with pytest.raises(HybridscoreError) as info:
        read_source(DataParams(source=f"semeval2013:{SEMEVAL}", test_split="unseen-domains"))
    assert str(info.value) == (
        f"{SEMEVAL}/test/unseen-domains: test split not found (params data.test_split); "
        "found: unseen-answers, unseen-questions"
    )
    empty = semeval_copy(tmp_path)
    for path in (empty / "train").iterdir():
        path.unlink()
    with pytest.raises(HybridscoreError, match=r"semeval/train: no .xml files"):
        read_source(DataParams(source=f"semeval2013:{empty}"))


def test_unknown_test_split_is_a_params_error(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"data": {"test_split": "unseen-topics"}})
    with pytest.raises(HybridscoreError, match=r"data\.test_split"):
        load_params(path)


# --------------------------------------------------------------------------- source forms
@pytest.mark.parametrize("source", ["asap:tests/fixtures/asap-sas/set9", "SemEval2013:x"])
def test_unknown_prefix_lists_the_two_forms(source: str) -> None:
    with pytest.raises(HybridscoreError) as info:
        read_source(DataParams(source=source))
    prefix = source.split(":")[0]
    assert str(info.value) == (
        f"params data.source {source!r}: unknown source form {prefix + ':'!r}; "
        f"data.source is a CSV path, {FORMS}"
    )
    assert "asap-sas:PATH" in FORMS and "semeval2013:PATH" in FORMS


def test_a_csv_whose_name_has_a_colon_is_still_a_csv(workspace: Path) -> None:
    shutil.copy("data/source.csv", "scores:v2.csv")
    table, labels = read_source(load_params().data.model_copy(update={"source": "scores:v2.csv"}))
    assert len(table) == len(pd.read_csv("data/source.csv")) and len(labels) == 3


def test_unknown_prefix_stops_the_stage_with_one_message(workspace: Path) -> None:
    write_params(workspace, {"data": {"source": "asap:data"}})
    done = subprocess.run(
        [sys.executable, "-m", "hybridscore.prepare"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "unknown source form 'asap:'" in done.stderr and "Traceback" not in done.stderr
    assert not (workspace / "data" / "prepared").exists()


def test_under_dvc_a_data_path_that_misses_the_source_is_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = f"asap-sas:{ASAP}"
    read_source(DataParams(source=source, labels=None))  # outside dvc: nothing to say
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("DVC_STAGE", "prepare")
    read_source(DataParams(source=source, labels=None))
    assert (
        f"params data.path 'data/sample/scientsbank.csv' does not hold '{ASAP}' "
        "(read by data.source): dvc tracks data.path"
    ) in capsys.readouterr().err
    for path in (str(ASAP), str(FIXTURES)):  # the folder itself, or one above it
        read_source(DataParams(source=source, path=path, labels=None))
        assert capsys.readouterr().err == ""
