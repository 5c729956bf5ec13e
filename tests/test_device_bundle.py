"""The device bundle: a model folder survives pack -> stash -> unpack, weights rounded to fp16."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def bundle(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import device_bundle

    return device_bundle


def test_a_model_folder_comes_back_from_its_parts_in_fp32(bundle, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "mpnet"}')
    (folder / "1_Pooling/config.json").write_text('{"pooling_mode_mean_tokens": true}')
    weights = {"w": torch.randn(64, 64), "ids": torch.arange(10)}
    save_file(weights, folder / "model.safetensors")

    parts = bundle.pack_model(folder, tmp_path / "out", part_mib=4096 / bundle.MIB)
    assert [p.name for p in parts] == [f"model-{n}" for n in range(1, len(parts) + 1)]
    assert len(parts) >= 2  # 64x64 fp16 weights are 8 KiB: several 4-KiB parts
    call = tmp_path / "call"
    for part in parts:  # one call each, carrying its part alone
        call.mkdir()
        part.rename(call / part.name)
        bundle.stash(call, tmp_path / "stash")
        shutil.rmtree(call)
    bundle.unpack(tmp_path / "stash", tmp_path / "rebuilt")

    rebuilt = load_file(tmp_path / "rebuilt/model.safetensors")
    assert rebuilt["w"].dtype == torch.float32
    assert torch.equal(rebuilt["w"], weights["w"].half().float())
    assert torch.equal(rebuilt["ids"], weights["ids"])
    assert (tmp_path / "rebuilt/1_Pooling/config.json").read_text() == (
        '{"pooling_mode_mean_tokens": true}'
    )


def test_unpack_refuses_a_stash_with_a_missing_part(bundle, tmp_path: Path) -> None:
    for name in ("model-1", "model-3"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "part").write_bytes(b"x")
    with pytest.raises(SystemExit, match=r"not 1\.\.n"):
        bundle.unpack(tmp_path, tmp_path / "rebuilt")


def test_items_are_grouped_into_calls_under_the_limit(bundle, tmp_path: Path) -> None:
    sizes = {"a": 50, "b": 40, "c": 10, "d": 5}
    items = []
    for name, kib in sizes.items():
        (tmp_path / name).write_bytes(b"\0" * kib * 1024)
        items.append(tmp_path / name)
    groups = bundle.calls(items, budget_mib=60 / 1024)
    assert [[p.name for p in g] for g in groups] == [["a", "c"], ["b", "d"]]
    with pytest.raises(SystemExit, match="over the"):
        bundle.calls(items, budget_mib=45 / 1024)
