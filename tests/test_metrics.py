"""Metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from hybridscore.baseline import fit_tfidf_lr, predict_proba
from hybridscore.metrics import (
    bootstrap_interval,
    calibration_bins,
    classification_metrics,
    per_label_metrics,
    roc_auc,
)


def test_perfect_and_hand_computed() -> None:
    assert classification_metrics([0, 1, 2], [0, 1, 2], 3) == {
        "accuracy": 1.0,
        "macro_f1": 1.0,
        "qwk": 1.0,
    }
    # 2x2 case: observed [[1,1],[0,2]], expected from marginals; QWK = 1 - sum(w*O)/sum(w*E)
    scores = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], 2)
    observed_disagreement = 1 / 4
    expected_disagreement = (2 / 4) * (1 / 4) + (2 / 4) * (3 / 4)
    assert scores["qwk"] == pytest.approx(1 - observed_disagreement / expected_disagreement)
    assert scores["accuracy"] == pytest.approx(0.75)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_qwk_penalises_far_errors_more() -> None:
    near = classification_metrics([0, 1, 2, 2], [0, 1, 1, 2], 3)["qwk"]
    far = classification_metrics([0, 1, 2, 2], [0, 1, 0, 2], 3)["qwk"]
    assert near > far


def test_roc_auc_binary_and_macro_one_vs_rest() -> None:
    binary = np.array([[0.9, 0.1], [0.3, 0.7], [0.35, 0.65], [0.2, 0.8]])
    assert roc_auc([0, 0, 1, 1], binary) == pytest.approx(0.75)  # one of four pairs misordered
    three = np.eye(3)[[0, 1, 2, 2]] * 0.7 + 0.1
    assert roc_auc([0, 1, 2, 2], three) == pytest.approx(1.0)
    assert roc_auc([1, 1], binary[:2]) is None  # one class: undefined


def test_calibration_bins_and_ece() -> None:
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.45, 0.55]])
    result = calibration_bins([0, 1, 0, 1], probs, bins=10)
    assert [b["count"] for b in result["bins"]] == [2, 2]
    assert result["bins"][0] == {"confidence": pytest.approx(0.55), "accuracy": 1.0, "count": 2}
    # |1.0 - 0.55| * 2/4 + |0.5 - 0.95| * 2/4
    assert result["ece"] == pytest.approx(0.45)


def test_tfidf_lr_baseline_learns_words() -> None:
    texts = ["plants need light", "light makes food", "no idea", "i do not know"] * 3
    model = fit_tfidf_lr(texts, [2, 2, 0, 0] * 3)
    probs = predict_proba(model, ["light for plants", "no"], 3)
    assert probs.shape == (2, 3) and (probs[:, 1] == 0).all()
    assert probs.argmax(axis=1).tolist() == [2, 0]


def test_per_label_precision_recall_f1_support() -> None:
    result = per_label_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["low", "mid", "high"])
    assert result["low"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert result["mid"] == {"precision": pytest.approx(2 / 3), "recall": 1.0,
                             "f1": pytest.approx(0.8), "support": 2}  # fmt: skip
    assert result["high"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_bootstrap_interval_holds_the_estimate_is_seeded_and_narrows_with_rows() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 400)
    pred = np.where(rng.random(400) < 0.7, truth, rng.integers(0, 3, 400))
    small = bootstrap_interval(truth[:40], pred[:40], 3, seed=1)
    large = bootstrap_interval(truth, pred, 3, seed=1)
    for (low, high), rows in ((small, 40), (large, 400)):
        point = classification_metrics(truth[:rows], pred[:rows], 3)["qwk"]
        assert low <= point <= high
    assert large[1] - large[0] < small[1] - small[0]
    assert bootstrap_interval(truth, pred, 3, seed=1) == large
    assert bootstrap_interval(truth, pred, 3, seed=2) != large
    low, high = bootstrap_interval(truth, pred, 3, metric="accuracy", resamples=200)
    assert low <= classification_metrics(truth, pred, 3)["accuracy"] <= high
