"""sweep: grid files, cell names and shards (fast); the real queue runs in test_sweep_queue.py."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from hybridscore.errors import HybridscoreError
from hybridscore.params import Params, load_params
from hybridscore.sweep import Dvc, cells, load_grid, shard, wait, yaml_value

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = load_params(REPO / "params.yaml")


def with_defaults(**sections: dict) -> Params:
    """params.yaml with some fields of some sections changed."""
    return DEFAULTS.model_copy(
        update={
            name: getattr(DEFAULTS, name).model_copy(update=fields)
            for name, fields in sections.items()
        }
    )


def write_grid(tmp_path: Path, grid: dict) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


@pytest.mark.parametrize("name", ["smoke", "paper", "budget"])
def test_shipped_grids_are_valid(name: str) -> None:
    grid = load_grid(REPO / "configs" / "grids" / f"{name}.yaml")
    assert grid.name == name and grid.target == "evaluate"
    assert "seed" in grid.axes  # the seed axis varies training seeds only


def test_the_paper_grid_is_the_papers() -> None:
    grid = load_grid(REPO / "configs" / "grids" / "paper.yaml")
    assert grid.axes["mix.synthetic_ratio"] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert grid.axes["synthesize.temperature"] == [0.1, 0.3, 0.5, 0.7, 0.9]
    # 6 x 5 x 3 = 90 combinations; the 5 temperatures of a ratio-0 cell are one training
    assert len(cells(grid, DEFAULTS)) == 90 - 4 * 3


def test_cells_are_the_product_with_readable_names(tmp_path: Path) -> None:
    grid = load_grid(
        write_grid(
            tmp_path,
            {
                "name": "g",
                "params": {"distill.epochs": 1},
                "axes": {"mix.synthetic_ratio": [0, 0.8], "mix.human_per_label": [25, None]},
            },
        )
    )
    found = cells(grid, DEFAULTS)
    assert [c.name for c in found] == [
        "g-ratio0-human25",
        "g-ratio0-humannull",
        "g-ratio0.8-human25",
        "g-ratio0.8-humannull",
    ]
    assert found[-1].overrides == {
        "distill.epochs": 1,
        "mix.synthetic_ratio": 0.8,
        "mix.human_per_label": None,
    }


def test_overrides_are_written_as_yaml_for_dvc() -> None:
    assert [yaml_value(v) for v in (None, True, 0.3, 8e-5, "a b")] == [
        "null",
        "true",
        "0.3",
        "8.0e-05",
        "a b",
    ]


def test_shards_split_the_cells_without_overlap(tmp_path: Path) -> None:
    grid = load_grid(REPO / "configs" / "grids" / "paper.yaml")
    every = cells(grid, DEFAULTS)
    parts = [shard(every, f"{i}/4") for i in range(1, 5)]
    assert sorted(c.name for part in parts for c in part) == sorted(c.name for c in every)
    assert {len(part) for part in parts} == {19, 20}


@pytest.mark.parametrize("spec", ["0/2", "3/2", "1-2", "x"])
def test_a_bad_shard_is_one_message(spec: str) -> None:
    with pytest.raises(HybridscoreError, match="--shard"):
        shard([], spec)


@pytest.mark.parametrize(
    ("grid", "expected"),
    [
        ({"name": "g", "axes": {}}, "axes"),
        ({"name": "g", "axes": {"seed": []}}, "axis 'seed'"),
        ({"name": "g", "axes": {"seed": [1, 1]}}, "distinct"),
        ({"name": "bad name", "axes": {"seed": [1]}}, "name"),
        ({"name": "g", "axes": {"seed": [1]}, "jobz": 2}, "jobz"),
    ],
)
def test_a_bad_grid_names_the_key(tmp_path: Path, grid: dict, expected: str) -> None:
    path = write_grid(tmp_path, grid)
    with pytest.raises(HybridscoreError, match=expected) as info:
        load_grid(path)
    assert str(path) in str(info.value)


TRANSFER = with_defaults(distill={"transfer_unused_synthetic": True})


def test_a_ratio_0_cell_asks_for_no_synthetic_rows(tmp_path: Path) -> None:
    grid = load_grid(
        write_grid(tmp_path, {"name": "g", "axes": {"mix.synthetic_ratio": [0.0, 0.5]}})
    )
    human, mixed = cells(grid, DEFAULTS)
    assert human.overrides["synthesize.responses_per_label"] == 0
    assert "synthesize.responses_per_label" not in mixed.overrides
    transfer = cells(grid, TRANSFER)[0]  # the student distils on synthetic rows
    assert "synthesize.responses_per_label" not in transfer.overrides


def test_a_human_only_training_is_queued_once_whatever_its_temperature(tmp_path: Path) -> None:
    axes = {
        "mix.synthetic_ratio": [0.0, 0.8],
        "synthesize.temperature": [0.3, 0.9],
        "mix.human_per_label": [25, 50],
        "seed": [1, 2],
    }
    grid = load_grid(write_grid(tmp_path, {"name": "g", "axes": axes}))
    names = [c.name for c in cells(grid, DEFAULTS)]
    assert len(names) == 16 - 4  # 8 mixes + one human-only cell per budget and seed
    assert "g-ratio0.0-temp0.3-human25-seed1" in names
    assert "g-ratio0.0-temp0.9-human25-seed1" not in names
    assert "g-ratio0.8-temp0.9-human25-seed1" in names
    # with the student distilling on synthetic rows, temperature matters again: all 16 run
    assert len(cells(grid, TRANSFER)) == 16


def test_auto_asks_each_budget_for_its_largest_ratio_over_min_fill() -> None:
    grid = load_grid(REPO / "configs" / "grids" / "budget.yaml")
    asked = {
        (c.overrides["mix.human_per_label"], c.overrides["mix.synthetic_ratio"]): c.overrides[
            "synthesize.responses_per_label"
        ]
        for c in cells(grid, DEFAULTS)
    }
    # local backend, min_fill 0.75: ratio 0.8 needs 4 x the budget per label
    assert asked == {
        (25, 0.0): 0, (25, 0.5): 134, (25, 0.8): 134,
        (50, 0.0): 0, (50, 0.5): 267, (50, 0.8): 267,
        (100, 0.0): 0, (100, 0.5): 534, (100, 0.8): 534,
    }  # fmt: skip
    api = with_defaults(synthesize={"backend": "openai"})  # min_fill 1.0
    assert {c.overrides["synthesize.responses_per_label"] for c in cells(grid, api)} == {
        0,
        100,
        200,
        400,
    }
    given = with_defaults(synthesize={"min_fill": 0.5})
    assert max(c.overrides["synthesize.responses_per_label"] for c in cells(grid, given)) == 800


def test_auto_reads_budget_and_ratio_from_params_and_needs_a_budget(tmp_path: Path) -> None:
    auto = {"synthesize.responses_per_label": "auto"}
    grid = load_grid(write_grid(tmp_path, {"name": "g", "params": auto, "axes": {"seed": [1, 2]}}))
    budget = with_defaults(mix={"human_per_label": 30, "synthetic_ratio": 0.8})
    asked = [c.overrides["synthesize.responses_per_label"] for c in cells(grid, budget)]
    assert asked == [160, 160]
    only_synthetic = with_defaults(mix={"human_per_label": 30, "synthetic_ratio": 1.0})
    # every ratio is 1: as many rows as the budget (over min_fill)
    assert cells(grid, only_synthetic)[0].overrides["synthesize.responses_per_label"] == 40
    with pytest.raises(HybridscoreError, match=r"g-seed1: .*human_per_label, which is null"):
        cells(grid, DEFAULTS)


class ScriptedQueue:
    """A ``Dvc`` whose ``dvc queue status`` answers come from a script, one per poll."""

    def __init__(self, polls: list[tuple[dict[str, str], int]]) -> None:
        self.polls, self.calls = polls, []

    def start_queue(self, jobs: int) -> None:
        self.calls.append(f"start -j {jobs}")

    def queue_status(self) -> tuple[dict[str, str], int]:
        return self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]

    def run(self, *args: str, check: bool = True) -> str:
        self.calls.append(" ".join(args[1:]))
        return ""


def test_wait_returns_when_every_cell_is_done_and_stops_idle_workers() -> None:
    dvc = ScriptedQueue(
        [({"a": "Running", "b": "Queued"}, 1), ({"a": "Success", "b": "Failed"}, 1)]
    )
    assert wait(dvc, ["a", "b"], jobs=1, poll_s=0, stall_s=60) == {"a": "Success", "b": "Failed"}
    assert dvc.calls == ["start -j 1", "queue stop"]


def test_wait_leaves_workers_running_someone_elses_experiment() -> None:
    dvc = ScriptedQueue([({"a": "Success", "other": "Running"}, 1)])
    wait(dvc, ["a"], jobs=1, poll_s=0, stall_s=60)
    assert dvc.calls == ["start -j 1"]


def test_wait_restarts_a_queue_with_no_worker_and_gives_a_running_cell_longer() -> None:
    # a worker busy with a cell may miss the status ping: no restart within 10 x stall_s
    busy = ScriptedQueue([({"a": "Running"}, 0), ({"a": "Running"}, 0), ({"a": "Success"}, 0)])
    wait(busy, ["a"], jobs=2, poll_s=0, stall_s=1)
    assert busy.calls == ["start -j 2"]
    dead = ScriptedQueue([({"a": "Queued"}, 0), ({"a": "Queued"}, 0), ({"a": "Success"}, 0)])
    wait(dead, ["a"], jobs=2, poll_s=0, stall_s=0)
    assert dead.calls == ["start -j 2", "start -j 2", "start -j 2"]
    never = ScriptedQueue([({"a": "Running", "b": "Queued"}, 0)])
    with pytest.raises(HybridscoreError, match="no worker and 2 cell"):
        wait(never, ["a", "b"], jobs=1, poll_s=0, stall_s=0)


def test_starting_the_queue_does_not_wait_for_the_workers_it_spawns(tmp_path: Path) -> None:
    # like `dvc queue start`: a worker that outlives the command, holding its stdout
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "dvc").write_text("#!/bin/sh\necho started\nsleep 30 &\nexit 0\n")
    (fake_bin / "dvc").chmod(0o755)
    dvc = Dvc(tmp_path)
    dvc.env["PATH"] = f"{fake_bin}{os.pathsep}{dvc.env['PATH']}"
    started = time.monotonic()
    dvc.start_queue(1)
    assert time.monotonic() - started < 15
