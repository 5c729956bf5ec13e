"""The smoke grid through the real DVC queue: time per cell and in all, and requests sent
against the minimum (one generation per temperature: goal ratio 1.00).

    python -m benchmarks.bench_sweep [--grid configs/grids/smoke.yaml] [--jobs 1]

Runs in a temporary git copy of the repository (committed files only, as queued experiments
see them) with the offline generator; nothing in the repository is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def sh(cwd: Path, *args: str, check: bool = True) -> str:
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com",
           "PYTHONPATH": str(cwd / "src")}  # fmt: skip
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if check and done.returncode:
        sys.exit(f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def copy_repository(target: Path) -> None:
    files = sh(REPO, "git", "ls-files", "--cached", "--others", "--exclude-standard").split("\n")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    for command in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                    ["git", "commit", "-qm", "bench"]):  # fmt: skip
        sh(target, *command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_sweep", description=__doc__)
    parser.add_argument("--grid", default="configs/grids/smoke.yaml")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        root = Path(tmp)
        copy_repository(root)
        started = time.perf_counter()
        sh(root, sys.executable, "-m", "hybridscore.cli", "sweep", args.grid, "-j", str(args.jobs))
        total = time.perf_counter() - started
        listed = sh(root, "git", "for-each-ref", "--format=%(refname:short) %(objectname)",
                    "refs/exps")  # fmt: skip
        cells = [line.split() for line in listed.splitlines() if "/celery/" not in line]
        sent, per_generation = 0, {}
        for _ref, commit in cells:
            report = json.loads(sh(root, "git", "show", f"{commit}:metrics/synthesize.json"))
            params = yaml.safe_load(sh(root, "git", "show", f"{commit}:params.yaml"))
            sent += report["requests_sent"]
            if "skipped" not in report:  # one generation per distinct synthesize section
                key = json.dumps(params["synthesize"], sort_keys=True)
                per_generation[key] = max(per_generation.get(key, 0), report["requests_planned"])
    minimum = sum(per_generation.values())
    result = {
        "grid": args.grid,
        "cells": len(cells),
        "jobs": args.jobs,
        "total_s": round(total, 1),
        "per_cell_s": round(total / max(len(cells), 1), 1),
        "requests_sent": sent,
        "requests_minimum": minimum,
        "ratio": round(sent / minimum, 3) if minimum else None,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    print(json.dumps(result, indent=2))
    return 0 if result["ratio"] in (1.0, None) else 1


if __name__ == "__main__":
    sys.exit(main())
