"""Training batches: sharded length-grouped batches, the same on every process, resumable."""

from __future__ import annotations

import random

import pytest
from accelerate.data_loader import BatchSamplerShard, SkipBatchSampler
from torch.utils.data import BatchSampler

from hybridscore.training.batches import LengthGroupedSampler


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


def test_an_epoch_does_not_run_from_long_to_short_texts() -> None:
    """Where short answers all have one label, an epoch that ended on its shortest batches
    would end on one label: batch order is random, not by length; batches stay whole."""
    from scipy.stats import spearmanr

    lengths = [3 + i % 97 for i in range(803)]  # 50 batches of 16 and a short one of 3
    sampler = LengthGroupedSampler(lengths, batch_size=16, seed=0)  # one mega-batch of 50
    batches = [list(b) for b in BatchSampler(sampler, 16, drop_last=False)]
    assert [len(b) for b in batches] == [16] * 50 + [3]
    full = batches[:-1]
    assert all(max(lengths[i] for i in b) - min(lengths[i] for i in b) <= 2 for b in full)
    longest = [max(lengths[i] for i in b) for b in full]
    rho, _ = spearmanr(range(len(longest)), longest)
    assert abs(rho) < 0.3  # long to short, as before, is -1
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
