"""Classification metrics (thin over scikit-learn): accuracy, macro-F1, QWK."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score


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
