"""One error type for bad input, and the wrapper that turns it into one message + exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable


class HybridscoreError(Exception):
    """Bad input (params, data, model paths, LLM replies): the message names file/field/row."""


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage ``main``; print a ``HybridscoreError`` as one line and exit with status 2."""
    try:
        main()
    except HybridscoreError as exc:
        print(f"hybridscore {name}: error: {exc}", file=sys.stderr)
        sys.exit(2)
