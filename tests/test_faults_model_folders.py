"""Fault matrix, model folders: every stage that loads a model (predict, evaluate, export,
teacher_logits) given an incomplete or broken folder exits 2 with one message naming the folder
and what is wrong, and leaves the previous outputs as they were."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from scorer_helpers import (
    assert_refused,
    copy_without_tokenizer,
    in_process,
    make_previous,
    predict_cli,
    real_cli,
    responses,
    save_tiny_classifier,
    write_stage_table,
)

from hybridscore.data import write_labels


def _drop_labels(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    del config["id2label"], config["label2id"]
    (folder / "config.json").write_text(json.dumps(config))


def _drop(pattern: str) -> Callable[[Path], None]:
    return lambda folder: [path.unlink() for path in folder.glob(pattern)]


def _garble(pattern: str) -> Callable[[Path], None]:
    return lambda folder: [path.write_bytes(b"not weights") for path in folder.glob(pattern)]


# fault -> (how to break a complete copy, the message after "<folder>: ")
FAULTS: dict[str, tuple[Callable[[Path], None] | None, str]] = {
    "missing": (None, "model folder not found"),
    "empty": (lambda f: [shutil.rmtree(f), f.mkdir()], "not a model folder (no config.json"),
    "no-labels": (_drop_labels,
                  "incomplete model folder (no labels (config.json: no readable id2label"),
    "no-weights": (_drop("*.safetensors"),
                   "incomplete model folder (no weights (model.safetensors or pytorch_model.bin"),
    "no-tokenizer": ("tokenizer", "incomplete model folder (no tokenizer files "
                     "(tokenizer_config.json, a vocabulary: tokenizer.json"),
    "broken-weights": (_garble("*.safetensors"), "cannot load"),
}  # fmt: skip
TOOLS = ("predict", "evaluate", "export", "teacher_logits")


@pytest.fixture(scope="module")
def complete(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_classifier(tmp_path_factory.mktemp("faults") / "complete", "bert")


def broken_copy(complete: Path, target: Path, fault: str) -> Path:
    """``target``: a copy of ``complete`` with ``fault``."""
    breaker = FAULTS[fault][0]
    if breaker == "tokenizer":
        return copy_without_tokenizer(complete, target)
    if breaker is not None:
        shutil.copytree(complete, target)
        breaker(target)
    return target


def stage_args(tool: str, folder: Path, root: Path, complete: Path) -> tuple[list[str], list]:
    """The stage's arguments with ``folder`` as its model, and its outputs."""
    write_stage_table(root / "train.csv", 12)
    write_stage_table(root / "val.csv", 6)
    write_labels(["low", "mid", "high"], root / "labels.json")
    if tool == "predict":
        return ["--model", str(folder), str(root / "val.csv"), "-o", str(root / "scored.csv")], [
            root / "scored.csv"
        ]
    if tool == "export":
        return [
            "--model",
            str(folder),
            "--out",
            str(root / "onnx"),
            "--texts",
            str(root / "val.csv"),
            "--metrics",
            str(root / "export.json"),
        ], [root / "onnx", root / "export.json"]
    if tool == "evaluate":  # a complete teacher first: the student's folder is checked too
        return [
            "--val",
            "val.csv",
            "--test",
            "val.csv",
            "--labels",
            "labels.json",
            "--teacher",
            str(complete),
            "--student",
            str(folder),
            "--live-dir",
            "live",
        ], [root / "live"]
    return [
        "--transfer",
        "train.csv",
        "--human-train",
        "train.csv",
        "--synthetic",
        "train.csv",
        "--labels",
        "labels.json",
        "--teacher",
        str(folder),
        "--out",
        "logits.csv",
    ], [root / "logits.csv"]


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("tool", TOOLS)
def test_bad_model_folder_exits_2_and_keeps_previous_outputs(
    workspace: Path, complete: Path, tool: str, fault: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = broken_copy(complete, workspace / "model", fault)
    args, outputs = stage_args(tool, folder, workspace, complete)
    make_previous(*outputs)
    message = f"hybridscore {tool}: error: {folder}: {FAULTS[fault][1]}"
    assert_refused(in_process(tool, args, capsys), message, outputs)


FRESH = [(tool, "no-tokenizer") for tool in TOOLS]
FRESH += [("export", fault) for fault in ("missing", "no-labels", "broken-weights")]


@pytest.mark.parametrize(("tool", "fault"), FRESH)
def test_bad_model_folder_without_previous_outputs_writes_none(
    workspace: Path, complete: Path, tool: str, fault: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = broken_copy(complete, workspace / "model", fault)
    args, outputs = stage_args(tool, folder, workspace, complete)
    assert_refused(in_process(tool, args, capsys), f"{folder}: {FAULTS[fault][1]}", outputs)
    assert not any(out.exists() for out in outputs)


@pytest.mark.parametrize("fault", ["no-tokenizer", "no-labels", "empty"])
def test_predict_refuses_a_broken_onnx_folder(tmp_path: Path, tiny_models, fault: str) -> None:
    """An ONNX export needs its tokenizer and labels as much as a PyTorch folder does (not a
    5-token tokenizer that scores every word as [UNK] with exit 0)."""
    folder = broken_copy(tiny_models[1], tmp_path / "onnx", fault)
    (tmp_path / "in.csv").write_text("text\n" + "\n".join(responses(3)) + "\n")
    out = tmp_path / "scored.csv"
    command = predict_cli("--model", str(folder), str(tmp_path / "in.csv"), "-o", str(out))
    message = f"predict: error: {folder}: {FAULTS[fault][1]}"
    assert_refused(real_cli(command, tmp_path), message, [out])
    assert not out.exists()
