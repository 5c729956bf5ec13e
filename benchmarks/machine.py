"""The machine a benchmark ran on, in words every benchmark records the same way."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (``platform.processor()`` is empty on many Linuxes)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_summary() -> str:
    """``"<CPU model>, <n> cores"``: the line a results file records."""
    return f"{cpu_name()}, {os.cpu_count()} cores"


def machine_summary() -> str:
    """:func:`cpu_summary`, plus the GPU where torch sees one (stages then train on it)."""
    try:
        import torch
    except ImportError:
        return cpu_summary()
    if not torch.cuda.is_available():
        return cpu_summary()
    return f"{torch.cuda.get_device_name()} (torch {torch.__version__}), {cpu_summary()}"
