"""Where code runs: device choice, precision checks, CPU threads, ONNX Runtime sessions."""

from __future__ import annotations

from pathlib import Path

import pytest
from onnx import TensorProto, helper

from hybridscore.errors import HybridscoreError
from hybridscore.runtime import (
    check_mixed_precision,
    check_threads,
    cpu_session,
    cpu_supports_bf16,
    default_device_type,
    has_accelerator_device,
    pin_cpu_threads,
    resolve_device,
)


def test_fp16_on_cpu_is_refused_with_the_key_named() -> None:
    with pytest.raises(HybridscoreError, match=r"params distill\.mixed_precision: 'fp16'"):
        check_mixed_precision("fp16", "cpu", "distill")
    check_mixed_precision("no", "cpu", "distill")
    check_mixed_precision("fp16", "cuda", "distill")


def test_bf16_on_cpu_follows_what_the_cpu_supports() -> None:
    if cpu_supports_bf16():
        check_mixed_precision("bf16", "cpu", "train_teacher")
    else:
        with pytest.raises(HybridscoreError, match=r"train_teacher\.mixed_precision: 'bf16'"):
            check_mixed_precision("bf16", "cpu", "train_teacher")


def test_auto_device_is_the_accelerator_if_any() -> None:
    assert resolve_device("auto") == default_device_type()
    assert (default_device_type() != "cpu") == has_accelerator_device()
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(HybridscoreError, match="device 'nonsense' is not usable here"):
        resolve_device("nonsense")


@pytest.mark.parametrize("threads", [None, 1, 4])
def test_valid_thread_counts_pass(threads: int | None) -> None:
    check_threads(threads)


@pytest.mark.parametrize("threads", [0, -1])
def test_thread_counts_below_one_are_named(threads: int) -> None:
    with pytest.raises(HybridscoreError, match=rf"threads must be at least 1 .*got {threads}"):
        check_threads(threads)


def test_pin_cpu_threads_sets_torch_and_none_leaves_it() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        pin_cpu_threads(None)
        assert torch.get_num_threads() == before
        pin_cpu_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def identity_model():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("as_file", [True, False])
def test_cpu_session_takes_a_file_or_a_model_and_its_threads(tmp_path: Path, as_file: bool) -> None:
    import onnx

    model = identity_model()
    source = model
    if as_file:
        source = tmp_path / "m.onnx"
        onnx.save(model, str(source))
    session = cpu_session(source, threads=2)
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert session.get_session_options().intra_op_num_threads == 2
    assert cpu_session(source).get_session_options().intra_op_num_threads == 0  # ORT default
