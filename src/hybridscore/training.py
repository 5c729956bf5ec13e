"""The one Accelerate training loop (teacher and student both use it; the loss is a parameter)."""

from __future__ import annotations

import math
import os
import resource
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
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
    """Shuffle, then sort within mega-batches by length so each batch pads little (seeded)."""

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


# --------------------------------------------------------------------------- the loop
@dataclass
class TrainResult:
    best_epoch: int
    best_val: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)


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


def _make_accelerator(cfg: TrainParams):
    from accelerate import Accelerator

    try:
        return Accelerator(
            mixed_precision=cfg.mixed_precision,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        )
    except (ValueError, RuntimeError) as exc:
        raise HybridscoreError(f"params mixed_precision={cfg.mixed_precision!r}: {exc}") from None


def _peak_memory_mb(accelerator) -> float:
    if accelerator.device.type == "cuda":
        return torch.cuda.max_memory_allocated(accelerator.device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


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
) -> TrainResult:
    """Fine-tune ``model``; keep the checkpoint with the best validation metric in ``out_dir``."""
    from accelerate.utils import set_seed
    from dvclive import Live
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    accelerator = _make_accelerator(cfg)
    set_seed(seed)
    num_labels = model.config.num_labels
    train_set = EncodedDataset(train, tokenizer, cfg.max_length)
    val_set = EncodedDataset(val, tokenizer, cfg.max_length)
    collate = make_collator(tokenizer)
    sampler = LengthGroupedSampler(train_set.lengths, cfg.batch_size, seed)
    train_loader = DataLoader(
        train_set, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate
    )
    val_loader = DataLoader(val_set, batch_size=cfg.eval_batch_size, collate_fn=collate)
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": cfg.weight_decay,
        },
        {
            "params": [p for n, p in model.named_parameters() if n.endswith(no_decay)],
            "weight_decay": 0.0,
        },
    ]
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate)
    steps_per_epoch = math.ceil(
        len(train_loader) / accelerator.num_processes / cfg.gradient_accumulation_steps
    )
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(cfg.warmup_ratio * total_steps), total_steps
    )
    model, optimizer, train_loader, val_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, val_loader, scheduler
    )

    out_dir, partial = Path(out_dir), Path(f"{out_dir}.partial")
    live = (
        Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False)
        if accelerator.is_main_process
        else None
    )
    result = TrainResult(best_epoch=-1, best_val={})
    best_score, stale, samples, train_seconds = -math.inf, 0, 0, 0.0
    for epoch in range(cfg.epochs):
        sampler.set_epoch(epoch)
        model.train()
        losses, started = [], time.perf_counter()
        progress = tqdm(
            train_loader,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not accelerator.is_local_main_process,
        )
        for batch in progress:
            with accelerator.accumulate(model):
                logits = model(**model_inputs(batch)).logits
                loss = loss_fn(logits, batch)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            losses.append(loss.detach())
            samples += len(batch["labels"]) * accelerator.num_processes
            progress.set_postfix(loss=f"{loss.item():.4f}")
        train_seconds += time.perf_counter() - started

        train_loss = accelerator.gather(torch.stack(losses).mean()).mean().item()
        val_logits, val_labels = predict_logits(model, val_loader, accelerator)
        val_metrics = classification_metrics(val_labels, val_logits.argmax(-1), num_labels)
        record = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "lr": scheduler.get_last_lr()[0],
            **val_metrics,
        }
        result.history.append(record)
        accelerator.print(" ".join(f"{k}={v:.4g}" for k, v in record.items()))
        if live is not None:
            live.log_metric("train/loss", train_loss)
            live.log_metric("train/lr", record["lr"])
            for name, value in val_metrics.items():
                live.log_metric(f"val/{name}", value)
            live.next_step()

        score = val_metrics[cfg.selection_metric]
        if score > best_score:
            best_score, stale = score, 0
            result.best_epoch, result.best_val = epoch + 1, val_metrics
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                shutil.rmtree(partial, ignore_errors=True)
                accelerator.unwrap_model(model).save_pretrained(partial)
                tokenizer.save_pretrained(partial)
        else:
            stale += 1
            if cfg.early_stopping_patience is not None and stale >= cfg.early_stopping_patience:
                accelerator.print(
                    f"early stopping: no {cfg.selection_metric} gain for {stale} epoch(s)"
                )
                break

    accelerator.wait_for_everyone()
    result.stats = {
        "train_samples_per_second": samples / max(train_seconds, 1e-9),
        "peak_memory_mb": _peak_memory_mb(accelerator),
        "truncated_fraction": train_set.truncated / max(len(train_set), 1),
        "num_processes": accelerator.num_processes,
    }
    if accelerator.is_main_process:
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(partial, out_dir)
        live.end()
    accelerator.wait_for_everyone()
    return result


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


def logits_for_texts(
    model, tokenizer, texts: Sequence[str], batch_size: int, max_length: int
) -> np.ndarray:
    """Logits for ``texts`` in their order (one process; batches sorted by length)."""
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in chunk],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            ).to(model.device)
            out[chunk] = model(**batch).logits.float().cpu().numpy()
    return out
