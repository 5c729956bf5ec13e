"""Metrics against hand-computed cases."""

from __future__ import annotations

import pytest

from hybridscore.metrics import classification_metrics


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
