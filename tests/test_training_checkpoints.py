"""Checkpoints: what a checkpoint must match to be resumed."""

from __future__ import annotations

from hybridscore.data import Examples
from hybridscore.params import TeacherParams
from hybridscore.training.checkpoints import run_fingerprint


def test_fingerprint_keys_on_params_seed_processes_and_data() -> None:
    data = Examples(texts=["a", "b"], labels=[0, 1])
    base = run_fingerprint(TeacherParams(), 1, 1, data)
    assert run_fingerprint(TeacherParams(checkpoint_every_steps=7), 1, 1, data) == base
    assert run_fingerprint(TeacherParams(learning_rate=1e-3), 1, 1, data) != base
    assert run_fingerprint(TeacherParams(), 2, 1, data) != base
    assert run_fingerprint(TeacherParams(), 1, 2, data) != base
    assert run_fingerprint(TeacherParams(), 1, 1, Examples(["a", "b"], [0, 0])) != base
