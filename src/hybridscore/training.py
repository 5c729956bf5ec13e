"""The one Accelerate training loop (teacher and student both use it; the loss is a parameter)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from hybridscore.errors import HybridscoreError
from hybridscore.metrics import classification_metrics
from hybridscore.params import TrainParams

LossFn = Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]


# --------------------------------------------------------------------------- data
@dataclass
class Examples:
    """Texts with label ids and, for distillation, the teacher's logits."""

    texts: list[str]
    labels: list[int]
    teacher_logits: np.ndarray | None = None


class EncodedDataset(Dataset):
    """Texts tokenised once (no padding: batches are padded dynamically)."""

    def __init__(self, examples: Examples, tokenizer, max_length: int) -> None:
        full = tokenizer(examples.texts, truncation=False)["input_ids"]
        self.truncated = sum(len(ids) > max_length for ids in full)
        self.encodings = tokenizer(examples.texts, truncation=True, max_length=max_length)
        self.examples = examples
        self.lengths = [len(ids) for ids in self.encodings["input_ids"]]

    def __len__(self) -> int:
        return len(self.examples.texts)

    def __getitem__(self, i: int) -> dict:
        item = {key: values[i] for key, values in self.encodings.items()}
        item["labels"] = self.examples.labels[i]
        if self.examples.teacher_logits is not None:
            item["teacher_logits"] = self.examples.teacher_logits[i]
        return item


def make_collator(tokenizer) -> Callable[[list[dict]], dict[str, torch.Tensor]]:
    """Pad a batch to its longest member; stack labels and teacher logits."""

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        extra = {
            key: [item.pop(key) for item in items]
            for key in ("labels", "teacher_logits")
            if key in items[0]
        }
        batch = tokenizer.pad(items, return_tensors="pt")
        batch = dict(batch)
        batch["labels"] = torch.tensor(extra["labels"], dtype=torch.long)
        if "teacher_logits" in extra:
            batch["teacher_logits"] = torch.tensor(
                np.stack(extra["teacher_logits"]), dtype=torch.float32
            )
        return batch

    return collate


class LengthGroupedSampler(Sampler[int]):
    """Shuffle, then sort within mega-batches by length so each batch pads little.

    Seeded by ``seed + epoch`` only (set through the prepared loader's ``set_epoch``), so
    every process yields the same order and Accelerate's batch sharding hands each process
    distinct batches; a resumed epoch replays the same order and skips the batches done.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, group: int = 50) -> None:
        self.lengths, self.batch_size, self.seed, self.group = (
            list(lengths),
            batch_size,
            seed,
            group,
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        size = self.batch_size * self.group
        for start in range(0, len(order), size):
            yield from sorted(order[start : start + size], key=lambda i: -self.lengths[i])


# --------------------------------------------------------------------------- losses
def cross_entropy_loss(
    class_weights: torch.Tensor | None = None, label_smoothing: float = 0.0
) -> LossFn:
    """Hard-label loss for the teacher (optional class weights and label smoothing)."""

    def loss(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        weight = None if class_weights is None else class_weights.to(logits.device)
        return F.cross_entropy(
            logits.float(), batch["labels"], weight=weight, label_smoothing=label_smoothing
        )

    return loss


def distillation_loss(alpha: float, temperature: float) -> LossFn:
    """α·CE(hard labels) + (1−α)·τ²·KL(teacher/τ ‖ student/τ)."""

    def loss(logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = logits.float()
        hard = F.cross_entropy(logits, batch["labels"])
        soft = F.kl_div(
            F.log_softmax(logits / temperature, dim=-1),
            F.log_softmax(batch["teacher_logits"] / temperature, dim=-1),
            log_target=True,
            reduction="batchmean",
        )
        return alpha * hard + (1 - alpha) * temperature**2 * soft

    return loss


def balanced_class_weights(labels: Sequence[int], num_labels: int) -> torch.Tensor:
    """``n / (k · count)`` per class (sklearn's 'balanced'); absent classes get weight 1."""
    counts = np.bincount(np.asarray(labels), minlength=num_labels).astype(float)
    weights = np.where(counts > 0, len(labels) / (num_labels * np.maximum(counts, 1)), 1.0)
    return torch.tensor(weights, dtype=torch.float32)


# --------------------------------------------------------------------------- launching
def needs_launcher(cfg: TrainParams) -> bool:
    """More than one process, or an Accelerate config file: run under ``accelerate launch``."""
    return cfg.num_processes > 1 or cfg.accelerate_config is not None


def launch_command(module: str, cfg: TrainParams, section: str) -> list[str]:
    """``accelerate launch`` (from this interpreter's environment) running ``module --worker``.

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
    return [*cmd, "--mixed_precision", cfg.mixed_precision, "-m", module, "--worker"]


def relaunched(worker: bool, cfg: TrainParams, section: str, model_field: str, spec: str) -> bool:
    """Re-run stage ``section`` under ``accelerate launch`` when params ask for it.

    Returns True when the workers ran (the caller is then done). The model is checked first,
    so a bad path fails once here, not once per worker.
    """
    if worker or not needs_launcher(cfg):
        return False
    from hybridscore.modeling import check_model

    check_model(spec, f"{section}.{model_field}")
    relaunch(f"hybridscore.{section}", cfg, section)
    return True


def relaunch(module: str, cfg: TrainParams, section: str) -> None:
    """Re-run ``module`` as ``--worker`` processes under ``accelerate launch``; wait for them."""
    check_mixed_precision(cfg.mixed_precision, default_device_type(), section)
    gpus = torch.cuda.device_count()
    if cfg.accelerate_config is None and 0 < gpus < cfg.num_processes:
        raise HybridscoreError(
            f"params {section}.num_processes: {cfg.num_processes} processes but {gpus} GPU(s) "
            f"here; use at most {gpus} (one process per GPU)"
        )
    cmd = launch_command(module, cfg, section)
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


def _has_accelerator_device() -> bool:
    if hasattr(torch, "accelerator"):
        return torch.accelerator.is_available()
    return torch.cuda.is_available()


def default_device_type() -> str:
    if hasattr(torch, "accelerator") and torch.accelerator.is_available():
        return torch.accelerator.current_accelerator().type
    return "cuda" if torch.cuda.is_available() else "cpu"


def _cpu_supports_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_mixed_precision(mode: str, device_type: str, section: str) -> None:
    """Refuse precisions the device cannot run (Accelerate would silently fall back to fp32)."""
    if mode == "fp16" and device_type == "cpu":
        raise HybridscoreError(
            f"params {section}.mixed_precision: 'fp16' needs a GPU, this run is on CPU; "
            f"use 'bf16' (CPUs with AVX512-BF16/AMX) or 'no'"
        )
    if mode == "bf16" and device_type == "cpu" and not _cpu_supports_bf16():
        raise HybridscoreError(
            f"params {section}.mixed_precision: 'bf16' is not supported by this CPU; use 'no'"
        )
    if mode == "bf16" and device_type == "cuda" and not torch.cuda.is_bf16_supported():
        raise HybridscoreError(
            f"params {section}.mixed_precision: 'bf16' is not supported by this GPU; "
            f"use 'fp16' or 'no'"
        )


def _make_accelerator(cfg: TrainParams, section: str):
    from accelerate import Accelerator

    if "LOCAL_RANK" in os.environ:  # a worker of `accelerate launch`
        die_with_parent()
    try:
        accelerator = Accelerator(
            cpu=not _has_accelerator_device(),  # lets `accelerate launch` on CPU use gloo
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        )
    except (ValueError, RuntimeError) as exc:
        raise HybridscoreError(f"params {section}.mixed_precision: {exc}") from None
    check_mixed_precision(cfg.mixed_precision, accelerator.device.type, section)
    return accelerator


def pin_cpu_threads(threads: int | None) -> None:
    """Fix torch's CPU threads (none given: torch's default): float sums depend on the count."""
    if threads:
        torch.set_num_threads(threads)


def reduce_sum(accelerator, *values: float) -> list[float]:
    """Sum Python numbers over all processes (float64, so sums match a single process)."""
    if accelerator.num_processes == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    return accelerator.reduce(tensor, reduction="sum").tolist()


# --------------------------------------------------------------------------- checkpoints
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
    stale: int = 0  # epochs without improvement (early stopping)
    history: list[dict[str, float]] = field(default_factory=list)
    samples: int = 0
    train_seconds: float = 0.0


def run_fingerprint(cfg: TrainParams, seed: int, num_processes: int, *sets: Examples) -> str:
    """What a checkpoint must match to be resumed: params, seed, topology and the data."""
    digest = hashlib.sha256()
    settings = cfg.model_dump(exclude={"checkpoint_every_steps"})
    digest.update(json.dumps([settings, seed, num_processes], sort_keys=True).encode())
    for examples in sets:
        digest.update(json.dumps([examples.texts, examples.labels]).encode())
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


# --------------------------------------------------------------------------- the loop
@dataclass
class TrainResult:
    best_epoch: int
    best_val: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)
    is_main_process: bool = True  # under `accelerate launch`, only this one writes files


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors a Hugging Face encoder takes (labels and teacher logits stay out)."""
    return {k: v for k, v in batch.items() if k not in ("labels", "teacher_logits")}


def predict_logits(model, loader: DataLoader, accelerator) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels over a (prepared) loader, gathered across processes."""
    model.eval()
    all_logits, all_labels = [], []
    with torch.no_grad():
        for batch in loader:
            logits = model(**model_inputs(batch)).logits
            logits, labels = accelerator.gather_for_metrics((logits.float(), batch["labels"]))
            all_logits.append(logits.cpu().numpy())
            all_labels.append(labels.cpu().numpy())
    return np.concatenate(all_logits), np.concatenate(all_labels)


def _peak_memory_mb(accelerator) -> float:
    if accelerator.device.type == "cuda":
        return torch.cuda.max_memory_allocated(accelerator.device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _optimizer(model, cfg: TrainParams) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and norm weights."""
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    named = list(model.named_parameters())
    groups = [
        {
            "params": [p for n, p in named if not n.endswith(no_decay)],
            "weight_decay": cfg.weight_decay,
        },
        {"params": [p for n, p in named if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.learning_rate)


def _open_live(live_dir: str | os.PathLike[str], history: list[dict[str, float]]):
    """A fresh dvclive run; after a resume, the epochs done so far are logged again first."""
    from dvclive import Live

    live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False)
    for record in history:
        _log_epoch(live, record)
    return live


LIVE_NAMES = {"train_loss": "train/loss", "lr": "train/lr"}


def _log_epoch(live, record: dict[str, float]) -> None:
    """One dvclive step per epoch: train loss and learning rate, validation metrics."""
    for name, value in record.items():
        if name != "epoch":
            live.log_metric(LIVE_NAMES.get(name, f"val/{name}"), value)
    live.next_step()


def _loaders(
    train: Examples, val: Examples, tokenizer, cfg: TrainParams, seed: int
) -> tuple[EncodedDataset, DataLoader, DataLoader]:
    """Length-grouped, dynamically padded training batches; validation batches in order."""
    train_set = EncodedDataset(train, tokenizer, cfg.max_length)
    val_set = EncodedDataset(val, tokenizer, cfg.max_length)
    collate = make_collator(tokenizer)
    sampler = LengthGroupedSampler(train_set.lengths, cfg.batch_size, seed)
    # Own generators: starting an epoch must not draw from the global RNG (exact resume).
    train_loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        sampler=sampler,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(seed),
    )
    val_loader = DataLoader(
        val_set,
        batch_size=cfg.eval_batch_size,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(seed),
    )
    return train_set, train_loader, val_loader


def _checkpoint_due(cfg: TrainParams, state: LoopState, batches_per_epoch: int) -> bool:
    """Every N optimizer steps, except on an epoch's last batch (the epoch end follows)."""
    every = cfg.checkpoint_every_steps
    return bool(every) and state.global_step % every == 0 and state.batches_done < batches_per_epoch


def train_classifier(
    model,
    tokenizer,
    train: Examples,
    val: Examples,
    cfg: TrainParams,
    loss_fn: LossFn,
    seed: int,
    out_dir: str | os.PathLike[str],
    live_dir: str | os.PathLike[str],
    *,
    section: str = "train",
    checkpoint_dir: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Fine-tune ``model``; keep the checkpoint with the best validation metric in ``out_dir``.

    With ``cfg.checkpoint_every_steps`` the full training state is saved every N optimizer
    steps in ``checkpoint_dir`` (default ``<out_dir>.checkpoints``); a rerun of the same
    params and data resumes from there, and the folder is removed on success. ``section``
    names the params section in error messages.
    """
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    accelerator = _make_accelerator(cfg, section)
    pin_cpu_threads(cfg.cpu_threads)
    set_seed(seed)
    num_labels = model.config.num_labels  # before `prepare` wraps the model (DDP)
    train_set, train_loader, val_loader = _loaders(train, val, tokenizer, cfg, seed)
    optimizer = _optimizer(model, cfg)
    # Counted before sharding: Accelerate steps the scheduler once per process per update.
    total_steps = math.ceil(len(train_loader) / cfg.gradient_accumulation_steps) * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(cfg.warmup_ratio * total_steps), total_steps
    )
    model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, val_loader, scheduler
    )
    out_dir, best_dir = Path(out_dir), Path(f"{out_dir}.partial")
    checkpoints = Checkpoints(
        Path(checkpoint_dir or f"{out_dir}.checkpoints"), accelerator, best_dir
    )
    fingerprint = run_fingerprint(cfg, seed, accelerator.num_processes, train, val)
    state = checkpoints.resume(fingerprint) or LoopState(fingerprint)
    live = _open_live(live_dir, state.history) if accelerator.is_main_process else None

    for epoch in range(state.epoch, cfg.epochs):
        train_loader.set_epoch(epoch)  # the sampler's shuffle, the same on every process
        skip = state.batches_done  # > 0 when resuming inside this epoch
        batches = accelerator.skip_first_batches(train_loader, skip) if skip else train_loader
        progress = tqdm(
            batches,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            initial=skip,
            total=len(train_loader),
            disable=not accelerator.is_local_main_process,
        )
        model.train()
        started = time.perf_counter()
        for batch in progress:
            with accelerator.accumulate(model):
                loss = loss_fn(model(**model_inputs(batch)).logits, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            batch_loss = loss.item()
            state.batches_done += 1
            state.loss_sum, state.loss_count = state.loss_sum + batch_loss, state.loss_count + 1
            state.samples += len(batch["labels"]) * accelerator.num_processes
            progress.set_postfix(loss=f"{batch_loss:.4f}")
            if accelerator.sync_gradients:
                state.global_step += 1
                if _checkpoint_due(cfg, state, len(train_loader)):
                    state.train_seconds += time.perf_counter() - started
                    checkpoints.save(state)
                    started = time.perf_counter()
        state.train_seconds += time.perf_counter() - started

        loss_sum, loss_count = reduce_sum(accelerator, state.loss_sum, state.loss_count)
        val_logits, val_labels = predict_logits(model, val_loader, accelerator)
        val_metrics = classification_metrics(val_labels, val_logits.argmax(-1), num_labels)
        record = {"epoch": epoch + 1, "train_loss": loss_sum / max(loss_count, 1)}
        record |= {"lr": scheduler.get_last_lr()[0], **val_metrics}
        state.history.append(record)
        accelerator.print(" ".join(f"{k}={v:.4g}" for k, v in record.items()))
        if live is not None:
            _log_epoch(live, record)
        state.epoch, state.batches_done, state.loss_sum, state.loss_count = epoch + 1, 0, 0.0, 0

        if val_metrics[cfg.selection_metric] > state.best_score:
            state.best_score, state.best_epoch = val_metrics[cfg.selection_metric], epoch + 1
            state.best_val, state.stale = val_metrics, 0
            _save_model(accelerator, model, tokenizer, best_dir)
        else:
            state.stale += 1
            if cfg.early_stopping_patience and state.stale >= cfg.early_stopping_patience:
                accelerator.print(
                    f"early stopping: no {cfg.selection_metric} gain for {state.stale} epoch(s)"
                )
                break

    accelerator.wait_for_everyone()
    stats = {
        "train_samples_per_second": state.samples / max(state.train_seconds, 1e-9),
        "peak_memory_mb": _peak_memory_mb(accelerator),
        "truncated_fraction": train_set.truncated / max(len(train_set), 1),
        "num_processes": accelerator.num_processes,
    }
    if accelerator.is_main_process:
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(best_dir, out_dir)
        live.end()
    checkpoints.clear()
    accelerator.wait_for_everyone()
    return TrainResult(
        state.best_epoch, state.best_val, state.history, stats, accelerator.is_main_process
    )


def _save_model(accelerator, model, tokenizer, path: Path) -> None:
    """``save_pretrained`` from the main process only (after every process got here)."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(path, ignore_errors=True)
        accelerator.unwrap_model(model).save_pretrained(path)
        tokenizer.save_pretrained(path)


def examples_from_table(table, labels: list[str], source: str) -> Examples:
    """Turn a stage table into texts + label ids (the id is the label's place in ``labels``)."""
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(table["label"]) - set(index))
    if unknown:
        raise HybridscoreError(f"{source}: labels {unknown} are not in labels.json {labels}")
    return Examples(texts=table["text"].tolist(), labels=[index[x] for x in table["label"]])


def limit_rows(table, limit: int | None, seed: int):
    """At most ``limit`` rows, stratified by label (``max_train_rows``, for quick runs)."""
    from hybridscore.data import stratified_sample

    return table if limit is None or len(table) <= limit else stratified_sample(table, limit, seed)
