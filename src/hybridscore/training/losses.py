"""Losses for the loop: ``loss(logits, batch) -> scalar`` (teacher: CE; student: KD)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

LossFn = Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]


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
