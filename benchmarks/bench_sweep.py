"""A grid through the real DVC queue: time per cell and in all, and requests sent against
the minimum (one generation per temperature and budget, its re-asks and top-ups included: what
the cell that generates sends; goal 1.00, exit 1 above it); optionally on a public data set and
with the report kept.

    python -m benchmarks.bench_sweep [--grid configs/grids/smoke.yaml] [--jobs 1]
    python -m benchmarks.bench_sweep --grid configs/grids/budget.yaml --data asap1 \\
        -S train_teacher.model=pypi:all-minilm-l6-v2 -S distill.epochs=1 \\
        --report benchmarks/results/paper-asap1

Runs in a temporary git copy of the repository (committed files only, as queued experiments
see them) with the offline generator; nothing in the repository is touched. ``--data`` (a set
of ``benchmarks.bench_sets``) and ``-S`` change the copy's ``params.yaml`` before its commit,
so every cell starts from them; ``--report DIR`` runs ``hybridscore report`` there and copies
its ``report.md`` and plots to DIR, with this run's figures in ``bench.json``.
A failed cell stops the run and keeps the copy (its experiments, logs and generated replies).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.bench_sets import SETS, merge, parse_overrides, parse_value, with_dotted
from benchmarks.machine import cpu_summary

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


def grid_axes(grid: str, axes: list[str]) -> dict[str, str]:
    """The grid file's text with ``KEY=V1,V2`` axes replaced or added (none: unchanged)."""
    if not axes:
        return {}
    spec = yaml.safe_load((REPO / grid).read_text())
    for text in axes:
        key, values = text.split("=", 1)
        spec["axes"][key] = [parse_value(v) for v in values.split(",")]
    return {grid: yaml.safe_dump(spec, sort_keys=False)}


def copy_repository(
    target: Path, params: dict | None = None, replaced: dict[str, str] | None = None
) -> None:
    """Committed and untracked-but-not-ignored files into a new repository at ``target``,
    with ``params`` merged into its params.yaml and ``replaced`` files written, before the one
    commit."""
    files = sh(REPO, "git", "ls-files", "--cached", "--others", "--exclude-standard").split("\n")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    if params:
        base = yaml.safe_load((target / "params.yaml").read_text())
        (target / "params.yaml").write_text(yaml.safe_dump(merge(base, params), sort_keys=False))
    for name, text in (replaced or {}).items():
        (target / name).write_text(text)
    for command in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                    ["git", "commit", "-qm", "bench"]):  # fmt: skip
        sh(target, *command)


def commit_of(repo: Path) -> str:
    """The repository's HEAD, marked ``+changes`` when its work tree differs."""
    head = sh(repo, "git", "rev-parse", "--short", "HEAD").strip()
    return head + ("+changes" if sh(repo, "git", "status", "--porcelain").strip() else "")


def request_counts(cells: list[tuple[dict, dict]]) -> tuple[int, int, int]:
    """Requests planned, sent, and the minimum to send, over cells of (params, synthesize
    metrics): one generation per synthesize section and budget, paid once by the cell that
    generates (its re-asks and top-up rounds included); every other cell should send 0."""
    sent, generations = 0, {}
    for params, report in cells:
        sent += report["requests_sent"]
        if "skipped" not in report:
            budget = {k: params["mix"].get(k) for k in ("human_per_label", "seed")}
            key = json.dumps([params["synthesize"], budget], sort_keys=True)
            planned, paid = generations.get(key, (0, 0))
            generations[key] = (
                max(planned, report["requests_planned"]),
                max(paid, report["requests_sent"]),
            )
    return (
        sum(planned for planned, _ in generations.values()),
        sent,
        sum(paid for _, paid in generations.values()),
    )


def run_in_copy(root: Path, args: argparse.Namespace, params: dict, commit: str) -> dict:
    """The grid in a git copy at ``root``: its figures (and the report, with ``--report``)."""
    copy_repository(root, params, grid_axes(args.grid, args.axis))
    started = time.perf_counter()
    sh(root, sys.executable, "-m", "hybridscore.cli", "sweep", args.grid, "-j", str(args.jobs))
    total = time.perf_counter() - started
    listed = sh(root, "git", "for-each-ref", "--format=%(refname:short) %(objectname)",
                "refs/exps")  # fmt: skip
    cells = [line.split() for line in listed.splitlines() if "/celery/" not in line]
    planned, sent, minimum = request_counts(
        [
            (
                yaml.safe_load(sh(root, "git", "show", f"{sha}:params.yaml")),
                json.loads(sh(root, "git", "show", f"{sha}:metrics/synthesize.json")),
            )
            for _ref, sha in cells
        ]
    )
    result = {
        "grid": args.grid,
        "data": args.data,
        "overrides": args.overrides,
        "cells": len(cells),
        "jobs": args.jobs,
        "total_s": round(total, 1),
        "per_cell_s": round(total / max(len(cells), 1), 1),
        "requests_planned": planned,
        "requests_sent": sent,
        "requests_minimum": minimum,
        "ratio": round(sent / minimum, 3) if minimum else None,
        "machine": cpu_summary(),
        "commit": commit,
    }
    print(json.dumps(result, indent=2))
    if args.report:
        out = args.report.resolve()
        sh(root, sys.executable, "-m", "hybridscore.cli", "report", "--out", str(out))
        (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_sweep", description=__doc__)
    parser.add_argument("--grid", default="configs/grids/smoke.yaml")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--data", choices=list(SETS), help="a public set (../shared/datasets)")
    parser.add_argument(
        "-S", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="a params.yaml override for every cell",
    )  # fmt: skip
    parser.add_argument(
        "--axis", action="append", default=[], metavar="KEY=V1,V2",
        help="replace (or add) one axis of the grid, e.g. seed=1 to run one seed",
    )  # fmt: skip
    parser.add_argument("--report", type=Path, help="keep `hybridscore report` output here")
    parser.add_argument("--keep", action="store_true", help="keep the git copy (experiments)")
    args = parser.parse_args(argv)
    params = with_dotted(
        dict(SETS[args.data]) if args.data else {}, parse_overrides(args.overrides)
    )
    commit = commit_of(REPO)  # what the copy holds, whatever is committed meanwhile
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        result = run_in_copy(root, args, params, commit)
    except BaseException:  # a failed cell exits here: keep what it generated
        print(
            f"bench_sweep: stopped; the copy stays at {root} (experiments, cell logs, "
            "generated replies: rerun its `hybridscore sweep` there)",
            file=sys.stderr,
        )
        raise
    if args.keep:
        print(f"bench_sweep: the copy stays at {root}", file=sys.stderr)
    else:
        shutil.rmtree(root)
    return 0 if result["ratio"] in (1.0, None) else 1


if __name__ == "__main__":
    sys.exit(main())
