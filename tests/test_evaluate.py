"""Stage ``evaluate``: both models on the human val/test splits, paths from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from scorer_helpers import LABELS, responses, save_tiny_classifier

from hybridscore import evaluate
from hybridscore.data import write_labels


def split_table(n: int, rater2: bool, questions: int = 1) -> pd.DataFrame:
    labels = [LABELS[i % len(LABELS)] for i in range(n)]
    ids = [f"q{1 + i % questions}" for i in range(n)]
    table = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "question_id": ids,
                          "text": responses(n), "label": labels, "source": "human"})  # fmt: skip
    table["label_rater2"] = [labels[(i + 1) % n] if i == 0 else x for i, x in enumerate(labels)]
    if not rater2:
        table.loc[0, "label_rater2"] = ""  # one row without a second rating: no ceiling
    return table


@pytest.fixture
def stage_args(workspace: Path) -> list[str]:
    """Every input under a name that is not the default one, so each must be passed."""
    inputs = workspace / "in"
    inputs.mkdir()
    split_table(6, rater2=False).to_csv(inputs / "v.csv", index=False)
    split_table(9, rater2=True, questions=2).to_csv(inputs / "t.csv", index=False)
    split_table(12, rater2=False).to_csv(inputs / "train.csv", index=False)
    write_labels(LABELS, inputs / "l.json")
    save_tiny_classifier(inputs / "big", "mpnet")
    save_tiny_classifier(inputs / "small", "bert")
    return ["--val", "in/v.csv", "--test", "in/t.csv", "--labels", "in/l.json",
            "--teacher", "in/big", "--student", "in/small", "--train", "in/train.csv",
            "--live-dir", "out/live"]  # fmt: skip


def test_scores_both_models_on_both_splits_into_the_live_dir(
    workspace: Path, stage_args: list[str]
) -> None:
    evaluate.main(stage_args)

    metrics = json.loads((workspace / "out/live/metrics.json").read_text())
    calibration = json.loads((workspace / "out/live/calibration.json").read_text())
    per_label = json.loads((workspace / "out/live/per_label.json").read_text())
    per_question = json.loads((workspace / "out/live/per_question.json").read_text())
    for role in ("teacher", "student", "tfidf_lr"):
        for split in ("val", "test"):
            found = metrics[role][split]
            expected = {
                "accuracy",
                "macro_f1",
                "qwk",
                "roc_auc",
                "qwk_ci_low",
                "qwk_ci_high",
                "ece",
                "predicted_labels",
            }
            if split == "test":  # two questions; val has one, so no per-question scores
                expected.add("question_qwk_mean")
            assert set(found) == expected, (role, split)
            assert found["qwk_ci_low"] <= found["qwk"] <= found["qwk_ci_high"]
            assert found["ece"] == pytest.approx(calibration[role][split]["ece"])
            assert list(per_label[role][split]) == LABELS
            rows = 6 if split == "val" else 9
            assert sum(x["support"] for x in per_label[role][split].values()) == rows
            plot = workspace / f"out/live/plots/sklearn/confusion_{role}_{split}.json"
            assert plot.is_file(), plot
            predicted = {row["predicted"] for row in json.loads(plot.read_text())}
            assert found["predicted_labels"] == len(predicted)
            bins = calibration[role][split]["bins"]
            assert sum(b["count"] for b in bins) == rows
            assert 0.0 <= calibration[role][split]["ece"] <= 1.0
    assert list(metrics["human_rater2"]) == ["test"]  # val lacks one second rating
    assert list(per_question["teacher"]) == ["test"]
    assert {q: x["rows"] for q, x in per_question["teacher"]["test"].items()} == {"q1": 5, "q2": 4}
    leakage = json.loads((workspace / "out/live/leakage.json").read_text())
    # the training rows repeat val/test answers, but as human answers: reported, not raised
    assert leakage["leaked"] == 0 and leakage["natural_duplicates"] == 6 + 9
    assert metrics["leakage"] == {"exact": 15, "near_duplicates": 0, "natural_duplicates": 15}
    assert not (workspace / "dvclive").exists()  # the default folder is not used


def test_help_prints_usage_and_runs_nothing(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "hybridscore.evaluate", "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: hybridscore evaluate")
    for option in ("--val", "--test", "--labels", "--teacher", "--student", "--live-dir"):
        assert option in done.stdout
    assert list(tmp_path.iterdir()) == []


def test_the_int8_scorer_is_scored_from_its_onnx_folder(
    workspace: Path, stage_args: list[str], tiny_models: tuple[Path, Path]
) -> None:
    _, onnx_folder = tiny_models
    args = [*stage_args[:6], "--int8", str(onnx_folder), "--live-dir", "out/int8"]
    evaluate.main(args)
    metrics = json.loads((workspace / "out/int8/metrics.json").read_text())
    assert list(metrics) == ["int8"]  # no references without --train
    assert set(metrics["int8"]) == {"val", "test"}


def test_a_val_or_test_text_in_the_synthetic_rows_fails_and_writes_nothing(
    workspace: Path, stage_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    synthetic = split_table(9, rater2=False).assign(source="synthetic")
    synthetic["text"] = [f"generated {i}" for i in range(9)]
    test = split_table(9, rater2=True)
    test.loc[3, "text"] = "a test answer that no training row holds"
    test.to_csv(workspace / "in/t.csv", index=False)
    synthetic.loc[3, "text"] = "A test answer, that NO training row holds!"  # recased
    synthetic.to_csv(workspace / "in/syn.csv", index=False)
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([*stage_args, "--synthetic", "in/syn.csv", "--transfer", "in/absent.csv"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "synthetic" in error and "test" in error and "NO training" in error, error
    assert not (workspace / "out").exists()
