"""The scorer benchmark runs end to end on tiny models and skips cleanly without them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from scorer_helpers import LABELS, save_tiny_classifier

from hybridscore.export import export_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import bench_scorer

    return bench_scorer


def test_skips_with_a_clear_message_when_models_are_absent(
    tmp_path: Path, bench, capsys: pytest.CaptureFixture[str]
) -> None:
    names = ["--teacher", "t", "--student", "s", "--onnx", "o", "--test", "test.csv"]
    code = bench.main([n if n.startswith("--") else str(tmp_path / n) for n in names])
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("bench_scorer: skipped: not found:") and str(tmp_path / "t") in out


def test_measures_three_models_and_their_ratios(
    tmp_path: Path, bench, capsys: pytest.CaptureFixture[str]
) -> None:
    teacher = save_tiny_classifier(tmp_path / "teacher", "mpnet")
    student = save_tiny_classifier(tmp_path / "student", "bert")
    export_model(student, tmp_path / "student_onnx")
    texts = [f"light energy makes sugar {i}" for i in range(12)]
    test = tmp_path / "test.csv"
    pd.DataFrame({"text": texts, "label": [LABELS[i % 3] for i in range(12)]}).to_csv(test)
    more = tmp_path / "more.csv"
    pd.DataFrame({"text": [f"plants need light {i}" for i in range(5)]}).to_csv(more)
    out = tmp_path / "result.json"

    code = bench.main(["--teacher", str(teacher), "--student", str(student),
                       "--onnx", str(tmp_path / "student_onnx"), "--test", str(test),
                       "--seq", "16", "--batch", "4", "--runs", "2", "--batch-runs", "1",
                       "--agree-on", str(test), str(more), str(tmp_path / "absent.csv"),
                       "--bootstrap", "50", "--json", str(out)])  # fmt: skip

    assert code == 0
    result = json.loads(out.read_text())
    assert list(result["models"]) == ["teacher", "student", "student-onnx-int8"]
    for row in result["models"].values():
        assert row["test_rows"] == 12 and 0 <= row["accuracy"] <= 1
        assert row["latency_ms_b1"] > 0 and row["throughput_b"] > 0 and row["size_mb"] > 0
    int8, student_row = result["models"]["student-onnx-int8"], result["models"]["student"]
    assert int8["params_m"] == pytest.approx(student_row["params_m"], rel=0.01)  # same weights
    ratios = result["ratios"]
    assert ratios["student_vs_teacher_throughput"] == pytest.approx(
        student_row["throughput_b"] / result["models"]["teacher"]["throughput_b"]
    )
    assert 0 <= ratios["int8_vs_student_agreement"] <= 1
    assert ratios["int8_vs_student_agreement_texts"] == 12 + 5  # the absent file is left out
    flips = ratios["int8_vs_student_flips"]
    assert ratios["int8_vs_student_agreement"] == pytest.approx(1 - flips / 17)
    low, high = ratios["student_vs_teacher_qwk_ci95"]
    assert math.isnan(low) or low <= high
    table = capsys.readouterr().out
    assert "| student-onnx-int8 |" in table and "int8_vs_student_throughput" in table


def test_bad_threads_stop_with_one_message(tmp_path: Path, bench) -> None:
    for name, kind in (("teacher", "mpnet"), ("student", "bert"), ("student_onnx", "bert")):
        save_tiny_classifier(tmp_path / name, kind)
    pd.DataFrame({"text": ["light"], "label": [LABELS[0]]}).to_csv(tmp_path / "test.csv")
    args = ["--teacher", "teacher", "--student", "student", "--onnx", "student_onnx",
            "--test", "test.csv", "--agree-on", "test.csv"]  # fmt: skip
    paths = [a if a.startswith("--") else str(tmp_path / a) for a in args]
    with pytest.raises(SystemExit, match=r"^bench_scorer: threads must be at least 1 .*got 0$"):
        bench.main([*paths, "--threads", "0"])
