"""Classification metrics, thin over scikit-learn: accuracy, F1, QWK, ROC-AUC, calibration,
per-label scores and bootstrap intervals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)


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


def per_label_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], labels: list[str]
) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of each label (ids are places in ``labels``)."""
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(len(labels))), zero_division=0
    )
    return {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(labels)
    }


def bootstrap_interval(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    num_labels: int,
    metric: str = "qwk",
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a ``classification_metrics`` metric: rows resampled
    with replacement ``resamples`` times (seeded, so the same inputs give the same interval)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        raise ValueError("no rows to score")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(y_true), size=(resamples, len(y_true)))
    if metric == "qwk":
        values = [_quadratic_kappa(y_true[d], y_pred[d], num_labels) for d in draws]
    else:
        values = [classification_metrics(y_true[d], y_pred[d], num_labels)[metric] for d in draws]
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _quadratic_kappa(y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> float:
    """QWK as ``classification_metrics`` gives it, from a bincount (fast enough to bootstrap)."""
    observed = np.bincount(y_true * num_labels + y_pred, minlength=num_labels**2)
    observed = observed.reshape(num_labels, num_labels).astype(np.float64)
    expected = np.outer(observed.sum(1), observed.sum(0)) / observed.sum()
    grid = np.arange(num_labels)
    weights = (grid[:, None] - grid[None, :]) ** 2
    disagreement = float((weights * expected).sum())
    if disagreement == 0.0:  # one class: kappa undefined, scored as classification_metrics does
        return 1.0 if (y_true == y_pred).all() else 0.0
    return 1.0 - float((weights * observed).sum()) / disagreement
