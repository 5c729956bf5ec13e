"""Fault matrix, inputs: bad CSVs (and label files) given to predict, evaluate and export. Each
case exits 2 with one message naming the file (and row or column), without a traceback, and
leaves the previous outputs as they were."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from scorer_helpers import (
    assert_refused,
    in_process,
    make_previous,
    predict_cli,
    responses,
    save_tiny_classifier,
    write_stage_table,
)

from hybridscore.data import write_labels

TEXT_CSV = ("text\n" + "\n".join(responses(4)) + "\n").encode()

# name -> (bytes of the input CSV (None: no file), the message after "<file>: ")
PREDICT_INPUTS: dict[str, tuple[bytes | None, str]] = {
    "missing": (None, "input file not found"),
    "empty-file": (b"", "the file is empty"),
    "header-only": (b"id,text\n", "no data rows (only a header)"),
    "no-column": (b"id,answer\n1,light\n", "missing column 'text' (--text-column); found: id"),
    "empty-text": (b"id,text\n1,light\n2,\n", "row 3, column 'text': empty text"),
    "not-utf8": (b"id,text\n1,light\n2,caf\xe9\n", "line 3: not valid utf-8 text"),
    "clash": (b"text,predicted_label\nlight,x\n", "already has output column(s) ['predicted_"),
    "ragged": (b"id,text\n1,light\n2,heat,extra\n", "not a valid CSV"),
    "xlsx": (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xb5U0#", "line 1: not valid utf-8"),
}  # fmt: skip

TABLE = "id,question_id,text,label,source\nr0,q1,light,low,human\nr1,q1,heat,high,human\n"
EVALUATE_INPUTS: dict[str, tuple[bytes | None, str]] = {
    "missing": (None, "not found (run the stage that writes it first)"),
    "no-column": (TABLE.replace("label,", "score,").encode(), "missing column(s) label"),
    "unknown-label": (TABLE.replace("high", "top").encode(),
                      "labels ['top'] are not in labels.json"),
    "empty-file": (b"", "the file is empty"),
    "not-utf8": (TABLE.replace("light", "caf\xe9").encode("latin-1"), "not valid UTF-8"),
}  # fmt: skip
EVALUATE_CASES = list(EVALUATE_INPUTS)

EXPORT_INPUTS: dict[str, tuple[bytes | None, str]] = {
    "missing": (None, "texts file not found"),
    "empty-file": (b"", "cannot read as a UTF-8 CSV"),
    "no-column": (b"id,answer\n1,hi\n", "missing column 'text' (--text-column)"),
    "blank-texts": (b"id,text\n1, \n2,\n", "column 'text' has no non-empty texts"),
    "not-utf8": (b"id,text\n1,caf\xe9\n", "cannot read as a UTF-8 CSV"),
    "ragged": (b"id,text\n1,light\n2,heat,extra\n", "cannot read as a UTF-8 CSV"),
}  # fmt: skip


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tmp_path_factory.mktemp("inputs") / "model", "bert")


def bad_file(path: Path, content: bytes | None) -> Path:
    if content is not None:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("case", list(PREDICT_INPUTS))
def test_predict_bad_csv(
    tmp_path: Path, model: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    content, message = PREDICT_INPUTS[case]
    source = bad_file(tmp_path / "in.csv", content)
    outputs = make_previous(tmp_path / "scored.csv")
    args = ["--model", str(model), str(source), "-o", str(outputs[0])]
    message = f"hybridscore predict: error: {source}: {message}"
    assert_refused(in_process("predict", args, capsys), message, outputs)


def test_predict_unknown_encoding(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = bad_file(tmp_path / "in.csv", TEXT_CSV)
    outputs = make_previous(tmp_path / "scored.csv")
    args = ["--model", str(model), str(source), "-o", str(outputs[0]), "--encoding", "klingon"]
    message = "hybridscore predict: error: --encoding: unknown encoding 'klingon'"
    assert_refused(in_process("predict", args, capsys), message, outputs)


def test_real_cli_bad_csv_exits_2_without_output(tmp_path: Path, tiny_models) -> None:
    (tmp_path / "in.csv").write_text("id,text\n1,light energy\n2,\n3,heat\n", encoding="utf-8")
    out = tmp_path / "scored.csv"
    command = predict_cli("--model", str(tiny_models[1]), str(tmp_path / "in.csv"), "-o", str(out))
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    expected = f"predict: error: {tmp_path / 'in.csv'}: row 3, column 'text': empty text"
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


@pytest.mark.parametrize("split", ["val", "test"])
@pytest.mark.parametrize("case", EVALUATE_CASES)
def test_evaluate_bad_split(
    workspace: Path, model: Path, case: str, split: str, capsys: pytest.CaptureFixture[str]
) -> None:
    content, message = EVALUATE_INPUTS[case]
    write_stage_table(workspace / "val.csv", 6)
    write_stage_table(workspace / "test.csv", 6)
    (workspace / f"{split}.csv").unlink()
    bad = bad_file(workspace / f"{split}.csv", content)
    write_labels(["low", "mid", "high"], workspace / "labels.json")
    outputs = make_previous(workspace / "live")
    args = [
        "--val",
        "val.csv",
        "--test",
        "test.csv",
        "--labels",
        "labels.json",
        "--teacher",
        str(model),
        "--student",
        str(model),
        "--live-dir",
        "live",
    ]
    message = f"hybridscore evaluate: error: {bad.name}: {message}"
    assert_refused(in_process("evaluate", args, capsys), message, outputs)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "not found", id="missing"),
        pytest.param(b"not json", "not valid JSON", id="not-json"),
        pytest.param(b'{"labels": "low"}', "expected a list of at least two labels", id="one"),
    ],
)
def test_evaluate_bad_labels_file(
    workspace: Path, model: Path, content, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write_stage_table(workspace / "val.csv", 6)
    labels = bad_file(workspace / "labels.json", content)
    outputs = make_previous(workspace / "live")
    args = ["--val", "val.csv", "--test", "val.csv", "--labels", "labels.json",
            "--teacher", str(model), "--student", str(model), "--live-dir", "live"]  # fmt: skip
    message = f"hybridscore evaluate: error: {labels.name}: {message}"
    assert_refused(in_process("evaluate", args, capsys), message, outputs)


@pytest.mark.parametrize("option", ["--texts", "--calibration-texts"])
@pytest.mark.parametrize("case", list(EXPORT_INPUTS))
def test_export_bad_texts(
    tmp_path: Path, model: Path, case: str, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    content, message = EXPORT_INPUTS[case]
    good = bad_file(tmp_path / "good.csv", TEXT_CSV)
    bad = bad_file(tmp_path / "bad.csv", content)
    outputs = make_previous(tmp_path / "onnx", tmp_path / "export.json")
    texts = {"--texts": good, "--calibration-texts": good, option: bad}
    args = [
        "--model",
        str(model),
        "--out",
        str(outputs[0]),
        "--metrics",
        str(outputs[1]),
        *(str(a) for item in texts.items() for a in item),
    ]
    assert_refused(in_process("export", args, capsys), f"export: error: {bad}: {message}", outputs)


@pytest.mark.parametrize("case", ["missing", "no-column"])
def test_export_bad_texts_without_previous_outputs_writes_none(
    tmp_path: Path, model: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    content, message = EXPORT_INPUTS[case]
    bad = bad_file(tmp_path / "val.csv", content)
    outputs = [tmp_path / "onnx", tmp_path / "export.json"]
    args = [
        "--model",
        str(model),
        "--out",
        str(outputs[0]),
        "--texts",
        str(bad),
        "--metrics",
        str(outputs[1]),
    ]
    assert_refused(in_process("export", args, capsys), f"export: error: {bad}: {message}", outputs)
    assert not outputs[0].exists() and not outputs[1].exists()
