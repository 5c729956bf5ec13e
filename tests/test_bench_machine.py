"""The machine line every benchmark records names the instruction sets speed depends on."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import machine

    return machine


def test_the_speed_flags_are_read_from_cpuinfo(machine, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Some CPU\nflags\t\t: fpu avx512_vnni sse4_2 avx2 avx512f\n")
    assert machine.cpu_features(cpuinfo) == ["avx2", "avx512f", "avx512_vnni"]


def test_a_machine_without_cpuinfo_has_none(machine, tmp_path: Path) -> None:
    assert machine.cpu_features(tmp_path / "absent") == []


def test_the_summary_names_them(machine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "cpu_features", lambda: ["avx2"])
    assert machine.cpu_summary().endswith(" cores (avx2)")
    monkeypatch.setattr(machine, "cpu_features", lambda: [])
    assert machine.cpu_summary().endswith(" cores (no AVX2)")
