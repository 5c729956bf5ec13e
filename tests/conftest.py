"""Shared test helpers: params files, a scratch workspace, and a committed copy of the project.

Every test that needs a temporary project builds it here: ``workspace`` (a cwd with params.yaml
and a small data source, for calling stage functions) or ``make_project`` (a git + DVC copy of
the repository, for running the real ``dvc`` commands).
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "scientsbank.csv"
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


def deep_update(base: dict, overrides: dict) -> dict:
    """``base`` with nested ``overrides`` applied (a new dict)."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_update(merged[key], value)
        else:
            merged[key] = value
    return merged


# A few steps of a tiny model may leave it giving one class: that is not what these tests test
# (tests/test_training_collapse.py tests the check, on its default).
TINY_RUNS = {section: {"fail_on_collapse": False} for section in ("train_teacher", "distill")}


def write_params(directory: Path, overrides: dict | None = None) -> Path:
    path = directory / "params.yaml"
    params = deep_update(repo_params(), TINY_RUNS)
    path.write_text(yaml.safe_dump(deep_update(params, overrides or {}), sort_keys=False))
    return path


def sample_rows(per_label: int = 10, seed: int = 0) -> pd.DataFrame:
    """A few real rows per label per split from the embedded SciEntsBank sample."""
    sample = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)
    shuffled = sample.sample(frac=1.0, random_state=seed)
    return shuffled.groupby(["split", "label"]).head(per_label).reset_index(drop=True)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch directory (cwd) with params.yaml pointing at a small copy of the sample."""
    data = tmp_path / "data" / "source.csv"
    data.parent.mkdir(parents=True)
    sample_rows().to_csv(data, index=False)
    write_params(tmp_path, {"data": {"source": "data/source.csv"}})
    monkeypatch.chdir(tmp_path)
    return tmp_path


def interruptible() -> None:
    """``preexec_fn`` of a child a test sends SIGINT to: a shell starts background jobs with
    SIGINT ignored, and Python keeps an ignored SIGINT, so restore the default first."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def project_env(root: Path) -> dict[str, str]:
    """The environment for running ``dvc`` in a project copy: the venv's tools, the copy's code."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(root / "src"),  # the copy's code, not the editable install's
        "DVC_NO_ANALYTICS": "1",
        "HF_HUB_OFFLINE": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }


def run_ok(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``cmd``; fail the test with the command's output tails if it exits non-zero."""
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, (
        f"{' '.join(cmd)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )
    return done


def project_files() -> list[str]:
    """Tracked files plus untracked ones git does not ignore (what a commit would hold)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [f for f in listed if (REPO / f).is_file()]


def init_repo(root: Path, env: dict[str, str], *, dvc: bool = False, commit: bool = True) -> None:
    """``git init`` (branch main) in ``root``; ``dvc init`` too; commit what is there."""
    root.mkdir(parents=True, exist_ok=True)
    run_ok(["git", "init", "-q", "-b", "main"], root, env)
    if dvc:
        run_ok([sys.executable, "-m", "dvc", "init", "-q"], root, env)
    if commit:
        run_ok(["git", "add", "-A"], root, env)
        run_ok(["git", "commit", "-qm", "copy", "--allow-empty"], root, env)


def make_project(root: Path, overrides: dict | None = None) -> dict[str, str]:
    """Copy the repository (as a commit would hold it) to ``root`` with ``overrides`` applied
    to params.yaml, commit it in a fresh git repo, and return the env to run ``dvc`` in it.
    Every test that needs a project or repository builds it here or with ``init_repo``."""
    for name in project_files():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    write_params(root, overrides)
    env = project_env(root)
    init_repo(root, env)
    return env


def run_make(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``make ARGS`` in a project copy with this venv (its setup step taken as done)."""
    venv = Path(sys.executable).parent.parent
    stamp = f"{venv}/.installed"
    return run_ok(["make", f"VENV={venv}", "-o", stamp, *args], root, env)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(PyTorch folder, ONNX export) of one tiny MPNet classifier, for the scorer tests
    (read only: a test that changes a folder works on a copy)."""
    from scorer_helpers import save_tiny_model_pair

    return save_tiny_model_pair(tmp_path_factory.mktemp("tiny_models"))
