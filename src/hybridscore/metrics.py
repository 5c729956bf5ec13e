"""Classification metrics, thin over scikit-learn: accuracy, F1, QWK, ROC-AUC, calibration."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, roc_auc_score


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], num_labels: int
) -> dict[str, float]:
    """Accuracy, macro-F1 over all labels, and quadratic weighted kappa (labels are ordered)."""
    labels = list(range(num_labels))
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        raise ValueError("no rows to score")
    if len(set(y_true) | set(y_pred)) == 1:
        qwk = 1.0 if (y_true == y_pred).all() else 0.0  # kappa is undefined for one class
    else:
        qwk = float(cohen_kappa_score(y_true, y_pred, labels=labels, weights="quadratic"))
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
        ),
        "qwk": qwk,
    }


def roc_auc(y_true: Sequence[int], probs: np.ndarray) -> float | None:
    """ROC-AUC, the paper's metric: for two labels the AUC of the higher label's probability;
    for more, the macro average of one-vs-rest AUCs over the labels that occur (and not all rows
    have). None where no label separates the rows (one class only)."""
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    if probs.shape[1] == 2:
        present = set(y_true.tolist())
        return float(roc_auc_score(y_true == 1, probs[:, 1])) if len(present) == 2 else None
    scores = [
        roc_auc_score(y_true == k, probs[:, k])
        for k in range(probs.shape[1])
        if 0 < int((y_true == k).sum()) < len(y_true)
    ]
    return float(np.mean(scores)) if scores else None


def calibration_bins(
    y_true: Sequence[int], probs: np.ndarray, bins: int = 10
) -> dict[str, object]:
    """Top-label calibration: rows binned by the predicted label's probability (equal-width
    bins over [0, 1]), each bin's mean confidence, accuracy and count, and the expected
    calibration error (count-weighted mean |accuracy - confidence|)."""
    y_true, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        member = index == b
        if not member.any():
            continue
        conf, acc = float(confidence[member].mean()), float(correct[member].mean())
        rows.append({"confidence": conf, "accuracy": acc, "count": int(member.sum())})
        ece += member.sum() / len(y_true) * abs(acc - conf)
    return {"bins": rows, "ece": float(ece)}
