"""Processes: re-running a stage under ``accelerate launch``, and each process's Accelerator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from hybridscore.errors import HybridscoreError
from hybridscore.params import TrainParams
from hybridscore.runtime import check_mixed_precision, default_device_type, has_accelerator_device


def needs_launcher(cfg: TrainParams) -> bool:
    """More than one process, or an Accelerate config file: run under ``accelerate launch``."""
    return cfg.num_processes > 1 or cfg.accelerate_config is not None


def launch_command(
    module: str, cfg: TrainParams, section: str, args: Sequence[str] = ()
) -> list[str]:
    """``accelerate launch`` (from this interpreter's environment) running ``module --worker``.

    ``args`` (the stage's own arguments, such as its paths) are passed on to every worker.
    Without a config file, N local processes are started through torchrun (``--multi_gpu``;
    on a machine without GPUs the workers fall back to CPU + gloo). With one, the file says
    the topology (GPUs, machines, DeepSpeed/FSDP); ``num_processes`` > 1 overrides its count.
    Mixed precision and gradient accumulation always come from params.
    """
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if cfg.accelerate_config is not None:
        if not Path(cfg.accelerate_config).is_file():
            raise HybridscoreError(
                f"params {section}.accelerate_config: file {cfg.accelerate_config!r} not found"
            )
        cmd += ["--config_file", cfg.accelerate_config]
    else:
        cmd += ["--multi_gpu", "--num_machines", "1", "--main_process_port", "0"]
        cmd += ["--dynamo_backend", "no"]
    if cfg.num_processes > 1:
        cmd += ["--num_processes", str(cfg.num_processes)]
    return [*cmd, "--mixed_precision", cfg.mixed_precision, "-m", module, "--worker", *args]


def relaunched(
    worker: bool,
    cfg: TrainParams,
    section: str,
    model_field: str,
    spec: str,
    args: Sequence[str] = (),
) -> bool:
    """Re-run stage ``section`` (with ``args``) under ``accelerate launch`` when params ask.

    Returns True when the workers ran (the caller is then done). The model is checked first,
    so a bad path fails once here, not once per worker.
    """
    if worker or not needs_launcher(cfg):
        return False
    from hybridscore.modeling import check_model

    check_model(spec, f"{section}.{model_field}")
    relaunch(f"hybridscore.{section}", cfg, section, args)
    return True


def relaunch(module: str, cfg: TrainParams, section: str, args: Sequence[str] = ()) -> None:
    """Re-run ``module`` as ``--worker`` processes under ``accelerate launch``; wait for them."""
    check_mixed_precision(cfg.mixed_precision, default_device_type(), section)
    gpus = torch.cuda.device_count()
    if cfg.accelerate_config is None and 0 < gpus < cfg.num_processes:
        raise HybridscoreError(
            f"params {section}.num_processes: {cfg.num_processes} processes but {gpus} GPU(s) "
            f"here; use at most {gpus} (one process per GPU)"
        )
    cmd = launch_command(module, cfg, section, args)
    print("launching: " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
    returncode = subprocess.call(cmd, preexec_fn=die_with_parent)
    if returncode != 0:
        raise HybridscoreError(
            f"accelerate launch exited with status {returncode} (worker output above)"
        )


def die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies (``kill -9`` of the stage).

    torchrun starts workers in sessions of their own, so without this a killed stage would
    leave its workers training (and writing the outputs) behind DVC's back.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the call
        os._exit(1)


def make_accelerator(cfg: TrainParams, section: str):
    """This process's ``Accelerator`` (precision and accumulation from params, checked)."""
    from accelerate import Accelerator

    if "LOCAL_RANK" in os.environ:  # a worker of `accelerate launch`
        die_with_parent()
    try:
        accelerator = Accelerator(
            cpu=not has_accelerator_device(),  # lets `accelerate launch` on CPU use gloo
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        )
    except (ValueError, RuntimeError) as exc:
        raise HybridscoreError(f"params {section}.mixed_precision: {exc}") from None
    check_mixed_precision(cfg.mixed_precision, accelerator.device.type, section)
    return accelerator


def reduce_sum(accelerator, *values: float) -> list[float]:
    """Sum Python numbers over all processes (float64, so sums match a single process)."""
    if accelerator.num_processes == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    return accelerator.reduce(tensor, reduction="sum").tolist()
