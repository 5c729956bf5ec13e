"""Fabricated DVC experiments for ``hybridscore report``: a git repo with a baseline commit and
experiment commits under ``refs/exps/...``, written in one ``git fast-import`` (no training)."""

from __future__ import annotations

import itertools
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from conftest import deep_update, init_repo, project_env, repo_params

LABELS = ["contradictory", "incorrect", "correct"]
CODE_MD5 = "0123456789abcdef0123456789abcdef"


@dataclass
class Fake:
    """One experiment: its name, nested params overrides and the files of its commit."""

    name: str
    overrides: dict[str, Any]
    scores: dict[str, float]  # role -> one value used for every metric of both splits
    files: dict[str, str] = field(default_factory=dict)


def nested(dotted: dict[str, Any]) -> dict[str, Any]:
    """``{"mix.synthetic_ratio": 0.8}`` -> ``{"mix": {"synthetic_ratio": 0.8}}``."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def lock(code_md5: str = CODE_MD5) -> str:
    """A dvc.lock whose ``src/`` deps carry ``code_md5``."""
    stages = {
        stage: {
            "cmd": f"python -m hybridscore.{stage}",
            "deps": [
                {"path": f"src/hybridscore/{stage}.py", "hash": "md5", "md5": code_md5, "size": 1}
            ],
        }
        for stage in ("prepare", "mix", "train_teacher", "evaluate")
    }
    return yaml.safe_dump({"schema": "2.0", "stages": stages})


def split_scores(value: float) -> dict[str, dict[str, float]]:
    return {
        s: {m: value for m in ("accuracy", "macro_f1", "qwk", "roc_auc")} for s in ("val", "test")
    }


def fake(
    name: str,
    axes: dict[str, Any],
    scores: dict[str, float],
    code_md5: str = CODE_MD5,
    files: dict[str, str] | None = None,
) -> Fake:
    """An experiment with params ``axes`` (dotted), every metric of role ``r`` = ``scores[r]``
    (``int8`` goes to evaluate_int8), a teacher confusion file, and extra ``files``."""
    evaluate = {r: split_scores(v) for r, v in scores.items() if r != "int8"}
    written = {
        "dvclive/evaluate/metrics.json": json.dumps(evaluate),
        "dvc.lock": lock(code_md5),
        "metrics/mix.json": json.dumps({"rows": 10, "human_rows": 8, "synthetic_rows": 2}),
        "dvclive/evaluate/plots/sklearn/confusion_teacher_test.json": json.dumps(
            [{"actual": a, "predicted": p} for a, p in itertools.product(LABELS, repeat=2)]
        ),
    }
    if "int8" in scores:
        written["dvclive/evaluate_int8/metrics.json"] = json.dumps(
            {"int8": split_scores(scores["int8"])}
        )
    return Fake(name, nested(axes), scores, {**written, **(files or {})})


def grid_fakes(
    ratios: list[float], temps: list[float], seeds: list[int], score: Any, prefix: str = "g"
) -> list[Fake]:
    """One fake per (ratio, temperature, seed); ``score(ratio, temp, seed)`` -> role scores."""
    return [
        fake(
            f"{prefix}-ratio{r}-temp{t}-seed{s}",
            {"mix.synthetic_ratio": r, "synthesize.temperature": t, "seed": s},
            score(r, t, s),
        )
        for r, t, s in itertools.product(ratios, temps, seeds)
    ]


def blob(text: str) -> bytes:
    data = text.encode()
    return b"data %d\n%s\n" % (len(data), data)


def commit_stream(ref: str, parent: str | None, files: dict[str, str], mark: int) -> bytes:
    out = [f"commit {ref}\nmark :{mark}\ncommitter t <t@example.com> 0 +0000\n".encode()]
    out.append(blob(ref))
    if parent:
        out.append(f"from {parent}\n".encode())
    for path, text in files.items():
        out.append(f"M 100644 inline {path}\n".encode() + blob(text))
    return b"".join(out) + b"\n"


def fast_import(root: Path, stream: bytes) -> None:
    subprocess.run(
        ["git", "fast-import", "--quiet"], cwd=root, input=stream, check=True, env=project_env(root)
    )


def make_repo(root: Path, fakes: list[Fake], base_lock: str | None = None) -> str:
    """A git repo at ``root`` with a baseline commit on main and ``fakes`` as its experiments;
    returns the baseline sha."""
    init_repo(root, project_env(root), commit=False)
    base_files = {"params.yaml": yaml.safe_dump(repo_params(), sort_keys=False)}
    if base_lock is not None:
        base_files["dvc.lock"] = base_lock
    fast_import(root, commit_stream("refs/heads/main", None, base_files, 1))
    baseline = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()
    add_experiments(root, baseline, fakes)
    return baseline


def add_experiments(root: Path, baseline: str, fakes: list[Fake]) -> None:
    prefix = f"refs/exps/{baseline[:2]}/{baseline[2:]}"
    stream = b"".join(
        commit_stream(
            f"{prefix}/{f.name}",
            baseline,
            {"params.yaml": yaml.safe_dump(deep_update(repo_params(), f.overrides)), **f.files},
            i + 2,
        )
        for i, f in enumerate(fakes)
    )
    fast_import(root, stream)
