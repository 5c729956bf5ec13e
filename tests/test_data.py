"""Atomic writes (``data.atomic_path`` / ``data.atomic_dir``): the old output or the new one,
partial writes named so they cannot pass for a result, and stale ones cleaned up."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hybridscore.data import atomic_dir, atomic_path

PARTIAL_NAME = r"\.{name}\.{pid}\.[^.]+\.partial"


def dead_pid() -> int:
    """The id of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_atomic_dir_keeps_previous_output_when_the_block_fails(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("half-written")
        raise RuntimeError("export failed")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_partial_is_named_so_it_cannot_pass_for_the_output(tmp_path: Path, kind: str) -> None:
    """Hidden, with the writer's pid and a ``.partial`` suffix (never ``.csv``), beside it."""
    out = tmp_path / ("scored.csv" if kind == "file" else "models")
    writer = atomic_path if kind == "file" else atomic_dir
    with writer(out) as tmp:
        assert tmp.parent == tmp_path
        pattern = PARTIAL_NAME.format(name=re.escape(out.name), pid=os.getpid())
        assert re.fullmatch(pattern, tmp.name), tmp.name
        assert not tmp.name.endswith(".csv")
        if kind == "file":
            tmp.write_text("new\n")
        else:
            (tmp / "a.txt").write_text("new\n")
        assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_atomic_path_keeps_previous_output_when_the_block_fails(tmp_path: Path) -> None:
    out = tmp_path / "scored.csv"
    out.write_text("old\n")
    with pytest.raises(KeyboardInterrupt), atomic_path(out) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scored.csv"]


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_next_write_removes_stale_partials_of_dead_processes_only(
    tmp_path: Path, kind: str
) -> None:
    out = tmp_path / ("scored.csv" if kind == "file" else "models")
    dead = dead_pid()
    stale_file = tmp_path / f".{out.name}.{dead}.ab12.partial"
    stale_file.write_text("half")
    stale_dir = tmp_path / f".{out.name}.{dead}.cd34.partial"
    stale_dir.mkdir()
    (stale_dir / "x").write_text("half")
    alive = tmp_path / f".{out.name}.1.ef56.partial"  # pid 1 runs: perhaps still writing
    alive.write_text("busy")
    other = tmp_path / f".other.csv.{dead}.gh78.partial"  # another output's: not this write's
    other.write_text("half")
    writer = atomic_path if kind == "file" else atomic_dir
    with writer(out) as tmp:
        assert not stale_file.exists() and not stale_dir.exists()  # removed before writing
        if kind == "file":
            tmp.write_text("new\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, alive.name, other.name])
