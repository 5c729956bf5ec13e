"""Kills: a stage killed with SIGKILL at a random (seeded) moment of writing its outputs, or two
runs at once, leave its previous complete outputs or the new complete ones, never a mix; the
next run removes what a killed one left half-written."""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_params

OUT = Path("data/prepared")
SET = ("train.csv", "val.csv", "test.csv", "labels.json")


@pytest.fixture
def big_source(workspace: Path) -> Path:
    """The workspace's source grown to ~12,000 rows, so that writing the splits takes a while."""
    rows = pd.read_csv("data/source.csv", dtype=str, keep_default_na=False)
    copies = [
        rows.assign(id=rows["id"] + f"-{i}", text=rows["text"] + f" ({i})") for i in range(200)
    ]
    pd.concat(copies).to_csv("data/source.csv", index=False)
    return workspace


def prepare(seed: int) -> subprocess.Popen:
    write_params(Path.cwd(), {"data": {"source": "data/source.csv"}, "prepare": {"seed": seed}})
    return subprocess.Popen(
        [sys.executable, "-m", "hybridscore.prepare"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def output_set() -> str:
    """One digest of the four outputs together ("" where none exists)."""
    if not all((OUT / name).exists() for name in SET):
        return "incomplete" if OUT.exists() and any(OUT.iterdir()) else ""
    digest = hashlib.sha256()
    for name in SET:
        digest.update((OUT / name).read_bytes())
    return digest.hexdigest()


def hidden_entries() -> set[Path]:
    """Temporary files and folders a write creates (dot names) in data/ and data/prepared/."""
    found = {p for p in Path("data").iterdir() if p.name.startswith(".")}
    if OUT.is_dir():
        found |= {p for p in OUT.iterdir() if p.name.startswith(".")}
    return found


def kill_while_writing(run: subprocess.Popen, rng: random.Random) -> None:
    """SIGKILL ``run`` a random few milliseconds after it starts writing its outputs."""
    before = hidden_entries()
    while run.poll() is None and not hidden_entries() - before:
        time.sleep(0.0005)
    time.sleep(rng.uniform(0.0, 0.08))
    run.kill()
    run.wait()


def test_killed_prepare_leaves_the_old_set_or_the_new_one(big_source: Path) -> None:
    complete = {}
    for seed in (1, 2):
        assert prepare(seed).wait() == 0
        complete[seed] = output_set()
    assert complete[1] != complete[2]  # the two seeds split differently
    rng = random.Random(19)
    for trial in range(6):
        before = output_set()
        kill_while_writing(prepare(1 if before == complete[2] else 2), rng)
        after = output_set()
        assert after in complete.values(), f"kill {trial}: not a complete set ({after})"
    assert prepare(1).wait() == 0
    assert output_set() == complete[1]
    leftovers = [p.name for p in hidden_entries() if p.name.endswith((".partial", ".tmp"))]
    assert leftovers == []  # the killed runs' partial writes are gone


def test_two_runs_at_once_never_mix(big_source: Path) -> None:
    finals = set()
    for seed in (1, 2):
        assert prepare(seed).wait() == 0
        finals.add(output_set())
    both = [prepare(1), prepare(2)]  # params change between the two starts
    assert [run.wait() for run in both] == [0, 0]
    assert output_set() in finals


def test_a_stale_partial_from_a_dead_process_is_removed(workspace: Path) -> None:
    assert prepare(1).wait() == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = OUT.parent / f".prepared.{dead.pid}.x1y2.partial"
    stale.mkdir()
    (stale / "train.csv").write_text("half")
    alive = OUT.parent / f".prepared.{1}.x1y2.partial"  # pid 1 is alive: not ours to delete
    alive.mkdir()
    assert prepare(1).wait() == 0
    assert not stale.exists() and alive.exists()
