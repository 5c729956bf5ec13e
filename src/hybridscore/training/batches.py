"""Training batches: texts tokenised once, padded per batch, grouped by length."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from hybridscore.data import Examples, tokenize
from hybridscore.params import TrainParams


class EncodedDataset(Dataset):
    """Texts (or text pairs: ``examples.firsts``) tokenised once (no padding: batches are
    padded dynamically)."""

    def __init__(self, examples: Examples, tokenizer, max_length: int) -> None:
        texts, firsts = examples.texts, examples.firsts
        full = tokenize(tokenizer, texts, firsts, truncation=False)["input_ids"]
        self.truncated = sum(len(ids) > max_length for ids in full)
        self.encodings = tokenize(tokenizer, texts, firsts, truncation=True, max_length=max_length)
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
    """Batches of similar length (little padding) in random order.

    Shuffle, sort within mega-batches of ``group`` batches by length, cut into batches, then
    shuffle the batches (a short last batch stays last, so the loader's batches are exactly
    these). Without that last shuffle an epoch would run from the longest texts to the
    shortest: where length goes with the label (short answers score 0), the final steps of
    every epoch see one label only and the model ends each epoch predicting it.

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
        by_length = [
            i
            for start in range(0, len(order), size)
            for i in sorted(order[start : start + size], key=lambda i: -self.lengths[i])
        ]
        batches = [
            by_length[start : start + self.batch_size]
            for start in range(0, len(by_length), self.batch_size)
        ]
        short = batches.pop() if len(batches[-1]) < self.batch_size else None
        for index in torch.randperm(len(batches), generator=generator).tolist():
            yield from batches[index]
        if short:
            yield from short


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors a Hugging Face encoder takes (labels and teacher logits stay out)."""
    return {k: v for k, v in batch.items() if k not in ("labels", "teacher_logits")}


def make_loaders(
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
