"""The training stage shell: arguments are the paths, and workers get the same arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import sample_rows, write_params

from hybridscore import train_teacher
from hybridscore.data import write_labels, write_table
from hybridscore.training import launch, stage


def test_defaults_are_todays_paths() -> None:
    args = stage.argument_parser(train_teacher.STAGE).parse_args([])
    assert {k: str(v) for k, v in vars(args).items() if k != "worker"} == {
        "train": "data/mixed/train.csv",
        "val": "data/prepared/val.csv",
        "labels": "data/prepared/labels.json",
        "out": "models/teacher",
        "live_dir": "dvclive/train_teacher",
        "metrics": "metrics/train_teacher.json",
    }


def test_relaunch_passes_the_path_arguments_to_the_workers(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = sample_rows(per_label=4).assign(source="human")
    write_table(table[table["split"] == "train"], workspace / "in/train.csv")
    write_table(table[table["split"] != "train"], workspace / "in/val.csv")
    write_labels(sorted(set(table["label"])), workspace / "in/labels.json")
    teacher = {"model": "pypi:all-minilm-l6-v2", "num_processes": 2}
    write_params(workspace, {"data": {"source": "data/source.csv"}, "train_teacher": teacher})
    launched: list[tuple] = []
    monkeypatch.setattr(launch, "relaunch", lambda *a: launched.append(a))
    argv = ["--train", "in/train.csv", "--val", "in/val.csv", "--labels", "in/labels.json",
            "--out", "out/teacher"]  # fmt: skip
    train_teacher.main(argv)
    [(module, _cfg, section, args)] = launched
    assert (module, section, list(args)) == ("hybridscore.train_teacher", "train_teacher", argv)
    assert not (workspace / "out").exists()  # the launcher trains nothing itself
