"""One error type for bad input, and the wrapper that turns it into one message + exit code."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable


class HybridscoreError(Exception):
    """Bad input (params, data, model paths, LLM replies): the message names file/field/row."""


def warn(name: str, message: str) -> None:
    """A problem worth a word that does not stop the stage: one line on stderr."""
    print(f"hybridscore {name}: warning: {message}", file=sys.stderr, flush=True)


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage ``main``; print a ``HybridscoreError`` as one message and exit with status 2."""
    started = time.perf_counter()
    try:
        main()
    except HybridscoreError as exc:
        print(f"hybridscore {name}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    if "RANK" not in os.environ:  # accelerate workers stay quiet; their launcher reports
        print(f"hybridscore {name}: done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
