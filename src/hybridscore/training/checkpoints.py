"""Resuming a killed run: the loop's state, what a checkpoint must match, and the folder."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from hybridscore.data import Examples, InputMode
from hybridscore.params import TrainParams
from hybridscore.training.launch import reduce_sum


@dataclass
class LoopState:
    """Where the loop is, beyond model/optimizer/scheduler/RNG (saved as JSON in checkpoints)."""

    fingerprint: str
    epoch: int = 0  # the epoch in progress (0-based)
    batches_done: int = 0  # of that epoch, per process
    global_step: int = 0  # optimizer steps
    loss_sum: float = 0.0  # this epoch's batch losses (this process; all processes in a file)
    loss_count: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1
    best_val: dict[str, float] = field(default_factory=dict)
    best_predicted: list[int] = field(default_factory=list)  # label ids predicted on val
    stale: int = 0  # epochs without improvement (early stopping)
    history: list[dict[str, float]] = field(default_factory=list)
    samples: int = 0
    train_seconds: float = 0.0


def run_fingerprint(
    cfg: TrainParams,
    seed: int,
    num_processes: int,
    *sets: Examples,
    input_mode: InputMode = "text",
) -> str:
    """What a checkpoint must match to be resumed: params, seed, topology, the data and what
    the model reads (``data.input``: a pair mode and the first segments count too)."""
    digest = hashlib.sha256()
    settings = cfg.model_dump(exclude={"checkpoint_every_steps"})
    digest.update(json.dumps([settings, seed, num_processes], sort_keys=True).encode())
    if input_mode != "text":  # nothing added for text: its fingerprints stay as they were
        digest.update(json.dumps(["input", input_mode]).encode())
    for examples in sets:
        digest.update(json.dumps([examples.texts, examples.labels]).encode())
        if examples.firsts is not None:
            digest.update(json.dumps(["firsts", examples.firsts]).encode())
        if examples.teacher_logits is not None:
            digest.update(np.ascontiguousarray(examples.teacher_logits, np.float32).tobytes())
    return digest.hexdigest()


def _link_tree(src: Path, dst: Path) -> None:
    """Copy a folder by hard links (files are never rewritten in place), falling back to copies."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link)


class Checkpoints:
    """``<out_dir>.checkpoints/step-N/``: ``accelerator.save_state`` + loop state + best model.

    A checkpoint is written under a temporary name and renamed when complete, so a kill at
    any moment leaves the previous one usable; only the newest is kept.
    """

    def __init__(self, root: Path, accelerator, best_dir: Path) -> None:
        self.root, self.accelerator, self.best_dir = root, accelerator, best_dir

    def latest(self) -> Path | None:
        steps = sorted(self.root.glob("step-*")) if self.root.is_dir() else []
        return steps[-1] if steps else None

    def save(self, state: LoopState) -> None:
        acc = self.accelerator
        loss_sum, loss_count = reduce_sum(acc, state.loss_sum, state.loss_count)
        final = self.root / f"step-{state.global_step:09d}"
        tmp = self.root / f".tmp-{final.name}"
        if acc.is_main_process:  # leftovers of a save that was killed
            for partial in self.root.glob(".tmp-step-*"):
                shutil.rmtree(partial, ignore_errors=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            saved = replace(state, loss_sum=loss_sum, loss_count=int(loss_count))
            (tmp / "loop_state.json").write_text(json.dumps(asdict(saved)), encoding="utf-8")
            if self.best_dir.is_dir():
                _link_tree(self.best_dir, tmp / "best")
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            for old in self.root.glob("step-*"):
                if old != final:
                    shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()

    def resume(self, fingerprint: str) -> LoopState | None:
        """Load the newest checkpoint of this very run (else None); restore the best model."""
        acc, latest = self.accelerator, self.latest()
        if latest is None:
            return None
        try:
            state = LoopState(**json.loads((latest / "loop_state.json").read_text("utf-8")))
        except (OSError, TypeError, ValueError):  # unreadable, or from another code version
            state = None
        if state is None or state.fingerprint != fingerprint:
            acc.print(f"ignoring {latest}: it belongs to a run with other params or data")
            acc.wait_for_everyone()
            if acc.is_main_process:
                shutil.rmtree(self.root, ignore_errors=True)
            return None
        acc.load_state(str(latest))
        if not acc.is_main_process:  # the saved loss sum is over all processes: count it once
            state.loss_sum, state.loss_count = 0.0, 0
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(self.best_dir, ignore_errors=True)
            if (latest / "best").is_dir():
                _link_tree(latest / "best", self.best_dir)
        acc.print(f"resumed from {latest} (epoch {state.epoch + 1}, step {state.global_step})")
        return state

    def clear(self) -> None:
        if self.accelerator.is_main_process:
            shutil.rmtree(self.root, ignore_errors=True)
