"""The real pipeline: `dvc repro` and `dvc exp run` on a copy of the repo with tiny params."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import make_project, run_ok

pytestmark = pytest.mark.slow

STAGES = [
    "prepare",
    "synthesize",
    "mix",
    "train_teacher",
    "teacher_logits",
    "distill",
    "export",
    "export_teacher",
    "evaluate",
    "evaluate_int8",
]
TINY = {
    "prepare": {"max_rows_per_split": 24},
    "synthesize": {"responses_per_label": 4},
    "train_teacher": {"model": "pypi:all-minilm-l6-v2", "max_length": 32, "epochs": 1},
    "distill": {"num_layers": 2, "max_length": 32, "epochs": 1},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A committed git+DVC copy of the repo with tiny params, and the env to run it in."""
    root = tmp_path_factory.mktemp("project")
    return root, make_project(root, TINY)


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_ok(cmd, cwd, env)


def evaluate_metrics(path: Path) -> dict:
    return json.loads(path.read_text())


def assert_metrics_in_range(metrics: dict) -> None:
    for role in ("teacher", "student"):
        for split in ("val", "test"):
            scores = metrics[role][split]
            assert 0.0 <= scores["accuracy"] <= 1.0
            assert 0.0 <= scores["macro_f1"] <= 1.0
            assert -1.0 <= scores["qwk"] <= 1.0


def test_repro_then_nothing_to_do_then_experiment(project) -> None:
    root, env = project
    first = run(["dvc", "repro"], root, env)
    for stage in STAGES:
        assert f"Running stage '{stage}'" in first.stdout, stage
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(STAGES)
    assert_metrics_in_range(evaluate_metrics(root / "dvclive/evaluate/metrics.json"))
    int8 = evaluate_metrics(root / "dvclive/evaluate_int8/metrics.json")["int8"]
    assert set(int8) == {"val", "test"} and 0.0 <= int8["test"]["accuracy"] <= 1.0
    for model in ("models/teacher", "models/student", "models/student_onnx", "models/teacher_onnx"):
        assert (root / model / "config.json").exists()
    for onnx_dir, metrics in (("student_onnx", "export"), ("teacher_onnx", "export_teacher")):
        assert (root / "models" / onnx_dir / "model.int8.onnx").exists()
        report = json.loads((root / "metrics" / f"{metrics}.json").read_text())
        assert report["onnx_fp32"]["agreement"] == 1.0 and report["texts"] > 0
        assert report["int8_calibration"]["calibration_texts"] > 0  # smoothing chosen on train
    assert "intended use" in (root / "models/student/README.md").read_text().lower()
    mix = json.loads((root / "metrics/mix.json").read_text())
    assert mix["synthetic_fraction"] == pytest.approx(0.2, abs=0.05)

    second = run(["dvc", "repro"], root, env)
    assert "Running stage" not in second.stdout
    assert "up to date" in second.stdout

    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", "baseline"], root, env)
    run(
        ["dvc", "exp", "run", "-S", "mix.synthetic_ratio=0.8", "-S", "synthesize.temperature=0.3"],
        root,
        env,
    )
    shown = json.loads(run(["dvc", "exp", "show", "--json"], root, env).stdout)
    experiments = [exp for rev in shown for exp in (rev.get("experiments") or [])]
    assert experiments, "dvc exp show lists no experiment"
    data = experiments[0]["revs"][0]["data"]
    assert data["params"]["params.yaml"]["data"]["mix"]["synthetic_ratio"] == 0.8
    assert_metrics_in_range(data["metrics"]["dvclive/evaluate/metrics.json"]["data"])

    # a student-only seed: the teacher and everything before it are reused
    reseeded = run(["dvc", "exp", "run", "-S", "distill.seed=7"], root, env).stdout
    rerun = {stage for stage in STAGES if f"Running stage '{stage}'" in reseeded}
    assert rerun == {"distill", "export", "evaluate", "evaluate_int8"}, rerun
    assert "| `seed` | 7 |" in (root / "models/student/README.md").read_text()
