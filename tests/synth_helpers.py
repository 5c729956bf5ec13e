"""A scratch workspace for the synthesize tests: tiny prepared splits and params, in tmp_path."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from conftest import REPO, init_repo, interruptible, project_env, run_ok, write_params

from hybridscore.data import write_table
from hybridscore.llm.types import Request
from hybridscore.synth.validate import responses_schema

PROMPTS = REPO / "src" / "hybridscore" / "prompts"
LABELS = ["incorrect", "partial", "correct"]
LEAK_MARK = "HELDOUTSECRET"  # in every val/test text; must never reach a prompt

# the synthesize stage alone, as dvc.yaml declares it (prompts copied into the workspace)
DVC_STAGE = {
    "stages": {
        "synthesize": {
            "cmd": f"{sys.executable} -m hybridscore.synthesize --no-progress",
            "deps": ["prompts", "data/prepared/train.csv", "data/prepared/labels.json"],
            "params": ["synthesize"],
            "outs": ["data/synthetic/rows.csv", {"data/llm_cache": {"persist": True}}],
            "metrics": [{"metrics/synthesize.json": {"cache": False}}],
        }
    }
}
DVC_ENV = {**project_env(REPO), "OPENAI_API_KEY": "sk-dvc-test"}  # the repository's code


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run_ok(["git", *args], cwd, DVC_ENV)


def dvc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return run_ok([sys.executable, "-m", "dvc", *args], cwd, DVC_ENV)


LOCAL_PROMPTS = {"prompt_template": "prompts/generate_responses.txt"}  # inside the workspace


def make_dvc_workspace(root: Path, synthesize: dict[str, Any]) -> Path:
    """``make_workspace`` + the prompts, ``DVC_STAGE`` as dvc.yaml, ``git init``, ``dvc init``."""
    make_workspace(root, {**synthesize, **LOCAL_PROMPTS})
    shutil.copytree(PROMPTS, root / "prompts")
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_STAGE, sort_keys=False))
    init_repo(root, DVC_ENV, dvc=True, commit=False)
    return root


def dvc_fails(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run dvc, expecting it to fail (the caller checks the output)."""
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=cwd, env=DVC_ENV, capture_output=True, text=True
    )
    assert done.returncode != 0, done.stdout + done.stderr
    return done


def rows(split: str, per_label: int, questions: int = 2, mark: str = "") -> pd.DataFrame:
    """Distinct, realistic-looking responses for ``questions`` questions × ``LABELS``."""
    records = []
    for q in range(questions):
        for label in LABELS:
            for i in range(per_label):
                records.append(
                    {
                        "id": f"{split}-{q}-{label}-{i}",
                        "question_id": f"Q{q}",
                        "text": f"{mark}{split} student {i} says {label} thing {q * 100 + i} "
                        f"about plants {'and water' * (i % 3)}",
                        "label": label,
                        "source": "human",
                        "question": f"Question {q}: why do plants need light?",
                        "reference": f"Reference {q}: plants make food with light.",
                    }
                )
    return pd.DataFrame(records)


def make_workspace(root: Path, synthesize: dict[str, Any] | None = None) -> Path:
    """Write data/prepared/{train,val,test}.csv, labels.json and params.yaml under ``root``."""
    prepared = root / "data" / "prepared"
    prepared.mkdir(parents=True, exist_ok=True)
    write_table(rows("train", 4), prepared / "train.csv")
    for split in ("val", "test"):
        write_table(rows(split, 2, mark=LEAK_MARK), prepared / f"{split}.csv")
    (prepared / "labels.json").write_text(json.dumps({"labels": LABELS}))
    write_synth_params(root, synthesize or {})
    return root


def write_synth_params(
    root: Path, synthesize: dict[str, Any], others: dict[str, Any] | None = None
) -> None:
    """params.yaml under ``root``: the repository's, seed 7, ``synthesize`` overrides applied
    (and ``others``: overrides of other sections, e.g. ``{"mix": {"synthetic_ratio": 0}}``)."""
    section = {
        "prompt_template": str(PROMPTS / "generate_responses.txt"),
        "grade_template": str(PROMPTS / "grade_response.txt"),
        "progress": False,
        **synthesize,
    }
    write_params(root, {**(others or {}), "seed": 7, "synthesize": section})


def openai_params(base_url: str, **overrides: Any) -> dict[str, Any]:
    """Params for the openai backend against a test server: fast retries, short timeouts."""
    return {
        "backend": "openai",
        "model": "gpt-4o",
        "base_url": base_url,
        "responses_per_label": 10,
        "responses_per_request": 5,
        "n": 1,
        "max_new_tokens": 400,
        "concurrency": 4,
        "timeout_s": 0.5,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "max_retries": 8,
        "max_reasks": 4,
        **overrides,
    }


def spawn_synthesize(root: Path, api_key: str, dvc_root: Path | None = None) -> subprocess.Popen:
    """The stage as a child process in ``root`` (to kill or interrupt); output in ``stdout``.

    ``dvc_root``: the ``DVC_ROOT`` DVC would set (its shared reply store is used)."""
    env = {
        **os.environ,
        "OPENAI_API_KEY": api_key,
        "PYTHONPATH": str(REPO / "src"),
    }
    env.pop("DVC_ROOT", None)
    if dvc_root is not None:
        env["DVC_ROOT"] = str(dvc_root)
    return subprocess.Popen(
        [sys.executable, "-m", "hybridscore.synthesize", "--no-progress"],
        cwd=root,
        env=env,
        preexec_fn=interruptible,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def kill_9_mid_generation(process: subprocess.Popen, server: Any) -> dict[str, int]:
    """``kill -9`` the stage after a random 10-60 replies; the counts served before the kill."""
    deadline = time.monotonic() + 60
    while sum(server.stats.ok_by_key.values()) < random.Random().randint(10, 60):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    return dict(server.stats.ok_by_key)


def files_text(root: Path) -> str:
    """All text under ``root`` (data, metrics, params), for leak checks."""
    return "\n".join(
        p.read_text(encoding="utf-8", errors="replace") for p in root.rglob("*") if p.is_file()
    )


def make_request(schema: bool = True, count: int = 2) -> Request:
    """A small request for the label "correct" (JSON schema unless ``schema`` is False)."""
    return Request(
        key="k",
        messages=(("user", "hi"),),
        temperature=0.3,
        max_tokens=50,
        seed=1,
        n=1,
        count=count,
        label="correct",
        schema=responses_schema("correct", count) if schema else None,
    )
