"""Run every benchmark in turn (``make bench``); each prints the ratios it measured in one run.

The scorer benchmark needs the models of a `dvc repro` (it skips with a message otherwise).
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ["bench_synthesize", "bench_train", "bench_scorer", "bench_report", "bench_sweep"]


def main() -> None:
    failed = []
    for name in BENCHMARKS:
        print(f"\n===== benchmarks.{name} =====", flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            print(f"skipped: {exc}")
            continue
        try:
            code = module.main([])
        except SystemExit as exc:
            code = exc.code
        if code not in (None, 0):
            failed.append(name)
    if failed:
        sys.exit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
