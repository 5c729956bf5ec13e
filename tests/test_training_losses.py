"""Losses: the KD loss against a hand-computed case."""

from __future__ import annotations

import math

import pytest
import torch

from hybridscore.training.losses import distillation_loss


def softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_kd_loss_matches_hand_computation() -> None:
    student, teacher, label, alpha, tau = [2.0, 0.5, -1.0], [0.0, 1.5, 0.5], 1, 0.3, 2.0
    hard = -math.log(softmax(student)[label])
    p_teacher = softmax([t / tau for t in teacher])
    p_student = softmax([s / tau for s in student])
    kl = sum(pt * math.log(pt / ps) for pt, ps in zip(p_teacher, p_student, strict=True))
    expected = alpha * hard + (1 - alpha) * tau**2 * kl

    batch = {"labels": torch.tensor([label]), "teacher_logits": torch.tensor([teacher])}
    got = distillation_loss(alpha, tau)(torch.tensor([student]), batch)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_kd_loss_is_zero_soft_part_when_student_equals_teacher() -> None:
    logits = torch.tensor([[0.3, -0.2, 1.1], [2.0, 0.0, -2.0]])
    batch = {"labels": torch.tensor([2, 0]), "teacher_logits": logits.clone()}
    only_soft = distillation_loss(alpha=0.0, temperature=3.0)(logits, batch)
    assert only_soft.item() == pytest.approx(0.0, abs=1e-6)
