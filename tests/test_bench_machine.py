"""The machine line every benchmark records names the instruction sets speed depends on."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def vector_isas(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks.machine import vector_isas

    return vector_isas


def test_the_instruction_sets_are_named_best_first(vector_isas) -> None:
    flags = {"fpu", "avx2", "avx512f", "avx512_vnni", "sse4_2"}
    assert vector_isas(flags) == "AVX-512 VNNI, AVX-512, AVX2"


def test_a_cpu_without_avx2_says_so(vector_isas) -> None:
    assert vector_isas({"fpu", "sse4_2"}) == "no AVX2"
