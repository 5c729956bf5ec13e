"""The machine a benchmark ran on, in words every benchmark records the same way."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (``platform.processor()`` is empty on many Linuxes)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


# The instruction sets behind a scorer's speed: the INT8 file over the eager student measured
# 2.7x on an AMD CPU with AVX-512 VNNI, 1.4x on AVX2 only and 1.3x on an Intel CPU with AMX
# (benchmarks/RESULTS.md), so a speed ratio means little without them.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """Which of :data:`SPEED_FLAGS` the CPU has (none where ``cpuinfo`` is missing)."""
    if not cpuinfo.exists():
        return []
    flags = next(
        (ln.split(":", 1)[1].split() for ln in cpuinfo.read_text().splitlines()
         if ln.startswith("flags")),
        [],
    )  # fmt: skip
    return [flag for flag in SPEED_FLAGS if flag in flags]


def flags_text(flags: list[str]) -> str:
    """:func:`cpu_features`' list as a results line shows it."""
    return ", ".join(flags) or "no AVX2"


def cpu_summary() -> str:
    """``"<CPU model>, <n> cores (<speed flags>)"``: the line a results file records."""
    return f"{cpu_name()}, {os.cpu_count()} cores ({flags_text(cpu_features())})"


def gpu_names() -> list[str]:
    """The GPUs ``nvidia-smi`` lists. Asking torch for a name would open a CUDA context in
    this process, which then holds a few hundred MB of GPU memory for a whole grid."""
    if shutil.which("nvidia-smi") is None:
        return []
    done = subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def machine_summary() -> str:
    """:func:`cpu_summary`, plus the GPU where torch can use one (stages then train on it)."""
    try:
        import torch
    except ImportError:
        return cpu_summary()
    if not torch.cuda.is_available():  # opens no context either
        return cpu_summary()
    gpu = next(iter(gpu_names()), "a CUDA GPU")
    return f"{gpu} (torch {torch.__version__}), {cpu_summary()}"
