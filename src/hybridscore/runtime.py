"""Where code runs: device choice, precision checks, CPU thread pinning, ONNX Runtime sessions.

torch and onnxruntime are imported inside the functions, so scoring an ONNX file never loads
torch and training never loads onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

from hybridscore.errors import HybridscoreError


def has_accelerator_device() -> bool:
    """A GPU (or another torch accelerator) is usable here."""
    import torch

    if hasattr(torch, "accelerator"):
        return torch.accelerator.is_available()
    return torch.cuda.is_available()


def default_device_type() -> str:
    """``cuda`` (or the machine's other accelerator) where there is one, else ``cpu``."""
    import torch

    if hasattr(torch, "accelerator") and torch.accelerator.is_available():
        return torch.accelerator.current_accelerator().type
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str) -> str:
    """``auto``: the machine's GPU (or other accelerator) if it has one, else ``cpu``."""
    import torch

    if device == "auto":
        return default_device_type()
    try:
        torch.empty(0, device=device)
    except (RuntimeError, ValueError, AssertionError) as exc:  # no CUDA build: AssertionError
        raise HybridscoreError(f"device {device!r} is not usable here: {exc}") from None
    return device


def cpu_supports_bf16() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_mixed_precision(mode: str, device_type: str, section: str) -> None:
    """Refuse precisions the device cannot run (Accelerate would silently fall back to fp32)."""
    import torch

    if mode == "fp16" and device_type == "cpu":
        raise HybridscoreError(
            f"params {section}.mixed_precision: 'fp16' needs a GPU, this run is on CPU; "
            f"use 'bf16' (CPUs with AVX512-BF16/AMX) or 'no'"
        )
    if mode == "bf16" and device_type == "cpu" and not cpu_supports_bf16():
        raise HybridscoreError(
            f"params {section}.mixed_precision: 'bf16' is not supported by this CPU; use 'no'"
        )
    if mode == "bf16" and device_type == "cuda" and not torch.cuda.is_bf16_supported():
        raise HybridscoreError(
            f"params {section}.mixed_precision: 'bf16' is not supported by this GPU; "
            f"use 'fp16' or 'no'"
        )


def check_threads(threads: int | None) -> None:
    """``threads`` is none (all cores) or at least 1: one meaning for every CPU runtime here."""
    if threads is not None and threads < 1:
        raise HybridscoreError(f"threads must be at least 1 (none = all cores), got {threads}")


def pin_cpu_threads(threads: int | None) -> None:
    """Fix torch's CPU threads (none given: torch's default): float sums depend on the count."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def cpu_session(model, threads: int | None = None):
    """An ONNX Runtime CPU session for ``model`` (a file or a ``ModelProto``) on ``threads``
    intra-op threads (none or 0: ONNX Runtime's default, one per core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    source = str(model) if isinstance(model, (str, Path)) else model.SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
