"""``hybridscore report`` over 200 fabricated experiments: seconds to aggregate (goal <= 10 s).

    python -m benchmarks.bench_report [--experiments 200]

The experiments are plain git commits under ``refs/exps/`` (as DVC saves them, each with this
repository's dvc.lock), built in a temporary folder with the test helpers: ratio x temperature
x seeds, no training. The time
covers the whole command (git reads, checks, statistics, report.md and every PNG).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 10.0
REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"


def score(r: float, t: float, s: int) -> dict[str, float]:
    v = 0.5 + 0.1 * r - 0.05 * abs(t - 0.3) + 0.01 * s
    return {"teacher": v, "student": v - 0.03, "int8": v - 0.04, "tfidf_lr": 0.45}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_report", description=__doc__)
    parser.add_argument(
        "--experiments", type=int, default=200, help="about this many (ratios x 5 temps x 4 seeds)"
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(TESTS))
    from report_helpers import grid_fakes, make_repo

    from hybridscore.report import main as report

    temps, seeds = [0.1, 0.3, 0.5, 0.7, 0.9], [1, 2, 3, 4]
    ratios = [round(i / 10, 1) for i in range(max(1, args.experiments // 20))]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fakes = grid_fakes(ratios, temps, seeds, score)
        real_lock = (REPO / "dvc.lock").read_text(encoding="utf-8")
        for f in fakes:  # the size of a real experiment's lock file
            f.files["dvc.lock"] = real_lock
        make_repo(root, fakes)
        started = time.perf_counter()
        report(["--repo", str(root), "--out", str(root / "reports")])
        seconds = time.perf_counter() - started
    ok = seconds <= GOAL_S
    print(
        f"report over {len(fakes)} experiments: {seconds:.2f} s (goal <= {GOAL_S:.0f} s)"
        f" {'OK' if ok else 'TOO SLOW'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
