"""The one Accelerate training loop (teacher and student both use it; the loss is a parameter).

``train_classifier`` is the whole loop: set up, then per epoch the training steps, a
validation pass, best-model selection and early stopping; checkpoints on the way.
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from hybridscore.data import Examples, InputMode, record_input_mode
from hybridscore.errors import HybridscoreError
from hybridscore.metrics import classification_metrics
from hybridscore.modeling import save_tokenizer
from hybridscore.params import TrainParams
from hybridscore.runtime import pin_cpu_threads
from hybridscore.training.batches import make_loaders, model_inputs
from hybridscore.training.checkpoints import Checkpoints, LoopState, run_fingerprint
from hybridscore.training.launch import make_accelerator, reduce_sum
from hybridscore.training.losses import LossFn


@dataclass
class TrainResult:
    best_epoch: int
    best_val: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)
    is_main_process: bool = True  # under `accelerate launch`, only this one writes files


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
    input_mode: InputMode = "text",
) -> TrainResult:
    """Fine-tune ``model``; keep the checkpoint with the best validation metric in ``out_dir``.

    With ``cfg.checkpoint_every_steps`` the full training state is saved every N optimizer
    steps in ``checkpoint_dir`` (default ``<out_dir>.checkpoints``); a rerun of the same
    params and data resumes from there, and the folder is removed on success. ``section``
    names the params section in error messages. ``input_mode`` (``data.input``) is what the
    examples hold (a pair mode: their ``firsts``); the saved model records it.
    """
    from accelerate.utils import set_seed

    if any((examples.firsts is None) != (input_mode == "text") for examples in (train, val)):
        raise ValueError(f"input mode {input_mode!r} needs first segments exactly for pairs")
    record_input_mode(model.config, input_mode)
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    accelerator = make_accelerator(cfg, section)
    pin_cpu_threads(cfg.cpu_threads)
    set_seed(seed)
    num_labels = model.config.num_labels  # before `prepare` wraps the model (DDP)
    label_names = dict(getattr(model.config, "id2label", None) or {})
    train_set, train_loader, val_loader = make_loaders(train, val, tokenizer, cfg, seed)
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
    fingerprint = run_fingerprint(
        cfg, seed, accelerator.num_processes, train, val, input_mode=input_mode
    )
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
        predicted = val_logits.argmax(-1)
        val_metrics = classification_metrics(val_labels, predicted, num_labels)
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
            state.best_predicted = np.unique(predicted).tolist()
            _save_model(accelerator, model, tokenizer, best_dir)
        else:
            state.stale += 1
            if cfg.early_stopping_patience and state.stale >= cfg.early_stopping_patience:
                accelerator.print(
                    f"early stopping: no {cfg.selection_metric} gain for {state.stale} epoch(s)"
                )
                break
        label = one_class(predicted, val_labels)
        if cfg.fail_on_collapse and label is not None and _loss_rose(state.history):
            name = label_names.get(label, label)  # no use training on: stop now
            what = collapse_message(
                section, cfg, state.history, name, epoch + 1, val_metrics["qwk"], stopped=True
            )
            _fail(what, accelerator, best_dir, checkpoints, live)

    accelerator.wait_for_everyone()
    best_label = one_class(np.asarray(state.best_predicted), np.asarray(val.labels))
    if cfg.fail_on_collapse and (best_label is not None or _loss_rose(state.history)):
        name = None if best_label is None else label_names.get(best_label, best_label)
        qwk = state.best_val.get("qwk", 0.0)
        what = collapse_message(section, cfg, state.history, name, state.best_epoch, qwk)
        _fail(what, accelerator, best_dir, checkpoints, live)
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


def one_class(predicted: np.ndarray, labels: np.ndarray) -> int | None:
    """The one label every row was given, where the rows themselves have more than one."""
    if len(set(predicted.tolist())) == 1 and len(set(labels.tolist())) > 1:
        return int(predicted[0])
    return None


def _loss_rose(history: list[dict[str, float]]) -> bool:
    """Training diverged: the last epoch's mean loss above the first's."""
    return len(history) > 1 and history[-1]["train_loss"] > history[0]["train_loss"]


def collapse_message(
    section: str,
    cfg: TrainParams,
    history: list[dict[str, float]],
    label: object | None,
    epoch: int,
    qwk: float,
    *,
    stopped: bool = False,
) -> str:
    """What happened and what to try: ``label`` is the one class predicted at ``epoch`` (the
    best one, or the epoch the run ``stopped`` after), None where predictions were varied."""
    losses = [record["train_loss"] for record in history]
    what = []
    if label is not None:
        when = (
            f"after epoch {epoch} of {cfg.epochs}"
            if stopped
            else f"at its best epoch ({epoch} of {len(losses)})"
        )
        what.append(f"{when} every validation prediction is label {label!r} (val QWK {qwk:.3f})")
    if _loss_rose(history):
        what.append(f"training loss rose {losses[0]:.3g} -> {losses[-1]:.3g}")
    return (
        f"{section} collapsed: {'; '.join(what)}; {'stopped early, ' if stopped else ''}"
        f"no model was saved. Try a lower learning "
        f"rate ({section}.learning_rate is {cfg.learning_rate:g}, e.g. "
        f"{cfg.learning_rate / 4:g}), {section}.class_weights: true for skewed labels, or "
        f"more epochs ({section}.epochs)."
    )


def _fail(message: str, accelerator, best_dir: Path, checkpoints: Checkpoints, live) -> None:
    """End a collapsed run: the partial model and checkpoints removed, ``out_dir`` untouched."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(best_dir, ignore_errors=True)
        live.end()
    checkpoints.clear()
    raise HybridscoreError(message)


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


def _checkpoint_due(cfg: TrainParams, state: LoopState, batches_per_epoch: int) -> bool:
    """Every N optimizer steps, except on an epoch's last batch (the epoch end follows)."""
    every = cfg.checkpoint_every_steps
    return bool(every) and state.global_step % every == 0 and state.batches_done < batches_per_epoch


def _save_model(accelerator, model, tokenizer, path: Path) -> None:
    """``save_pretrained`` from the main process only (after every process got here)."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(path, ignore_errors=True)
        accelerator.unwrap_model(model).save_pretrained(path)
        save_tokenizer(tokenizer, path)


def _peak_memory_mb(accelerator) -> float:
    if accelerator.device.type == "cuda":
        return torch.cuda.max_memory_allocated(accelerator.device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


LIVE_NAMES = {"train_loss": "train/loss", "lr": "train/lr"}


def _open_live(live_dir: str | os.PathLike[str], history: list[dict[str, float]]):
    """A fresh dvclive run; after a resume, the epochs done so far are logged again first."""
    from dvclive import Live

    live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False)
    for record in history:
        _log_epoch(live, record)
    return live


def _log_epoch(live, record: dict[str, float]) -> None:
    """One dvclive step per epoch: train loss and learning rate, validation metrics."""
    for name, value in record.items():
        if name != "epoch":
            live.log_metric(LIVE_NAMES.get(name, f"val/{name}"), value)
    live.next_step()
