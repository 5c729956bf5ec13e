"""The public-data benchmark: its cell params and its table (the runs themselves are benchmarks)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import bench_sets

    return bench_sets


def record(bench, name: str, seed: int, teacher: float, tfidf: float, **extra) -> dict:
    metrics = {
        "teacher": {"val": {"qwk": teacher}, "test": {"qwk": teacher}},
        "tfidf_lr": {"test": {"qwk": tfidf}},
    }
    return {
        "set": name,
        "point": "defaults",
        "seed": seed,
        "models": ["teacher"],
        "metrics": metrics,
        **extra,
    }


def test_table_means_seeds_and_flags_a_set_below_the_margin_goal(bench) -> None:
    records = [
        record(bench, "asap1", 1, 0.90, 0.70),
        record(bench, "asap1", 2, 0.80, 0.70),
        record(bench, "asap2", 1, 0.60, 0.59),
        {
            "set": "asap2",
            "point": "defaults",
            "seed": 2,
            "failed": "train_teacher",
            "message": "train_teacher collapsed",
            "models": ["teacher"],
        },
    ]
    rows = {line.split(" | ")[0].strip("| "): line for line in bench.table(records).splitlines()}
    assert "0.850 ± 0.071" in rows["asap1"]  # mean ± sample std of 0.90 and 0.80
    assert "below goal" not in rows["asap1"]  # margin 0.15 ≥ 0.08
    assert "below goal" in rows["asap2"]  # margin 0.01
    assert "2: train_teacher (train_teacher collapsed)" in rows["asap2"]


def test_overrides_nest_and_merge_without_dropping_siblings(bench) -> None:
    base = {"data": {"source": "x.csv", "encoding": "utf-8"}, "seed": 42}
    merged = bench.merge(base, bench.nested("data.source", "asap-sas:/d/set1"))
    assert merged == {"data": {"source": "asap-sas:/d/set1", "encoding": "utf-8"}, "seed": 42}
    assert base["data"]["source"] == "x.csv"


def test_every_set_reads_a_built_in_source(bench) -> None:
    for name, params in bench.SETS.items():
        prefix = "asap-sas:" if name.startswith("asap") else "semeval2013:"
        assert params["data"]["source"].startswith(prefix)
        assert params["data"]["source"].endswith(params["data"]["path"])


def test_every_cell_is_audited_for_leakage_on_all_its_training_tables(bench) -> None:
    command = bench.evaluate_command(["teacher"])
    for flag in ("--train", "--synthetic", "--transfer"):
        assert flag in command.split()


def test_a_sweep_benchmark_can_replace_one_axis_of_a_grid(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    import yaml

    from benchmarks import bench_sweep

    replaced = bench_sweep.grid_axes("configs/grids/budget.yaml", ["seed=7", "mix.total_rows=10"])
    grid = yaml.safe_load(replaced["configs/grids/budget.yaml"])
    assert grid["axes"]["seed"] == [7]
    assert grid["axes"]["mix.total_rows"] == [10]
    assert grid["axes"]["mix.human_per_label"] == [25, 50, 100]
    assert bench_sweep.grid_axes("configs/grids/budget.yaml", []) == {}


def test_a_cell_keeps_its_teachers_epochs_also_when_it_failed(bench, tmp_path: Path) -> None:
    metrics = tmp_path / "dvclive/train_teacher/plots/metrics"
    (metrics / "train").mkdir(parents=True)
    (metrics / "val").mkdir()
    (metrics / "train/loss.tsv").write_text("step\tloss\n0\t0.80\n1\t0.86\n")
    (metrics / "val/qwk.tsv").write_text("step\tqwk\n0\t0.0\n1\t0.0\n")
    assert bench.epoch_history(tmp_path) == [
        {"train/loss": 0.80, "val/qwk": 0.0},
        {"train/loss": 0.86, "val/qwk": 0.0},
    ]
    assert bench.epoch_history(tmp_path / "no-run") == []
