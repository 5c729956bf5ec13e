"""Per-token INT8 quantisation: the weight rounding, the rewritten graph's arithmetic in ONNX
Runtime against a NumPy reference, the independence of token rows, and activation smoothing."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from hybridscore.errors import HybridscoreError
from hybridscore.quantize import (
    ACTIVATION_LEVELS,
    activation_absmax,
    quantize_int8,
    quantize_matmuls_per_token,
    quantize_weight,
    smooth_activations,
)

RNG = np.random.default_rng(0)
K, N = 48, 5
WEIGHT = RNG.normal(size=(K, N)).astype(np.float32)
BIAS = RNG.normal(size=N).astype(np.float32)


def test_quantize_weight_per_column_hand_case() -> None:
    weight = np.array([[0.5, -1.0], [0.25, 0.0], [-0.5, 0.5]], np.float32)
    values, scale = quantize_weight(weight)  # 7-bit: the largest |w| of a column -> ±64
    np.testing.assert_array_equal(values, [[64, -64], [32, 0], [-64, 32]])
    np.testing.assert_allclose(scale, [0.5 / 64, 1.0 / 64])
    values, scale = quantize_weight(weight, reduce_range=False)
    np.testing.assert_array_equal(values[:, 1], [-127, 0, 64])  # 0.5 / (1/127) = 63.5 -> 64
    np.testing.assert_allclose(scale, [0.5 / 127, 1.0 / 127])
    values, scale = quantize_weight(np.zeros((2, 1), np.float32))
    assert values.tolist() == [[0], [0]] and scale.tolist() == [1.0]


def linear_model(opset: int = 20) -> onnx.ModelProto:
    """y = x @ W + b and z = x @ W2 (same input, as attention's Q/K/V); x is [batch, seq, K]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", K])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", N])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", "seq", N])
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["y"]),
        helper.make_node("MatMul", ["x", "W2"], ["z"]),
    ]
    weights = [
        numpy_helper.from_array(WEIGHT, "W"),
        numpy_helper.from_array(BIAS, "b"),
        numpy_helper.from_array(-2 * WEIGHT, "W2"),
    ]
    graph = helper.make_graph(nodes, "linear", [x], [y, z], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def run(model: onnx.ModelProto, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    y, z = session.run(None, {"x": x})
    return y, z


def reference(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per-token symmetric int8 activations times per-column 7-bit weights, in NumPy."""
    scale = np.abs(x).max(axis=-1, keepdims=True) / ACTIVATION_LEVELS
    x_int = np.clip(np.rint(x / scale), -127, 127)
    w_int, w_scale = quantize_weight(weight)
    return (x_int @ w_int.astype(np.float64)) * scale * w_scale


@pytest.fixture(scope="module")
def quantized() -> onnx.ModelProto:
    return quantize_matmuls_per_token(linear_model())


def test_rewritten_graph_computes_per_token_int8(quantized: onnx.ModelProto) -> None:
    ops = [node.op_type for node in quantized.graph.node]
    assert "MatMul" not in ops and ops.count("MatMulIntegerToFloat") == 2
    assert ops.count("QuantizeLinear") == 1  # x is quantised once for both weights
    assert {t.name for t in quantized.graph.initializer}.isdisjoint({"W", "W2"})  # fp32 gone
    x = RNG.normal(size=(3, 4, K)).astype(np.float32)
    x[1, 2] *= 50.0  # an outlier token
    y, z = run(quantized, x)
    np.testing.assert_allclose(y, reference(x, WEIGHT) + BIAS, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(z, reference(x, -2 * WEIGHT), rtol=1e-4, atol=1e-4)
    exact = x @ WEIGHT + BIAS
    assert np.abs(y - exact).max() < 0.05 * np.abs(exact).max()  # close to fp32, not equal
    assert np.abs(y - exact).max() > 0


def test_a_token_row_does_not_change_the_others(quantized: onnx.ModelProto) -> None:
    """Per-token scales: an outlier in one row (another text of a batch) leaves the rest."""
    x = RNG.normal(size=(2, 6, K)).astype(np.float32)
    louder = x.copy()
    louder[0, 0] *= 1000.0
    y, _ = run(quantized, x)
    y_louder, _ = run(quantized, louder)
    np.testing.assert_array_equal(y[1], y_louder[1])
    np.testing.assert_array_equal(y[0, 1:], y_louder[0, 1:])


def test_opset_raised_for_blocked_quantize_linear(quantized: onnx.ModelProto) -> None:
    opsets = {o.domain: o.version for o in quantized.opset_import}
    assert opsets[""] == 21 and opsets["com.microsoft"] == 1
    newer = quantize_matmuls_per_token(linear_model(opset=22))
    assert {o.domain: o.version for o in newer.opset_import}[""] == 22  # never lowered


def test_graph_without_weight_matmul_is_an_error() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    with pytest.raises(HybridscoreError, match="no MatMul by a weight matrix"):
        quantize_matmuls_per_token(helper.make_model(graph))


def outlier_channel_inputs(batches: int = 3) -> list[dict[str, np.ndarray]]:
    """Inputs whose channel 7 is ~30x the others in every token (as BERT's GELU outputs)."""
    rng = np.random.default_rng(1)
    out = []
    for _ in range(batches):
        x = rng.normal(size=(4, 6, K)).astype(np.float32)
        x[..., 7] *= 30.0
        out.append({"x": x})
    return out


def test_activation_absmax_per_channel_skips_padding() -> None:
    batch = outlier_channel_inputs(1)[0]
    absmax = activation_absmax(linear_model(), [batch])
    assert list(absmax) == ["x"]  # one entry per MatMul input, shared by W and W2
    np.testing.assert_allclose(absmax["x"], np.abs(batch["x"]).max(axis=(0, 1)))
    mask = np.ones((4, 6), np.int64)
    mask[:, 3:] = 0
    # a feed named attention_mask drops padded tokens (models that take one)
    model = linear_model()
    model.graph.input.append(
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])
    )
    model.graph.node.append(helper.make_node("Identity", ["attention_mask"], ["mask_out"]))
    model.graph.output.append(
        helper.make_tensor_value_info("mask_out", TensorProto.INT64, ["batch", "seq"])
    )
    masked = activation_absmax(model, [{"x": batch["x"], "attention_mask": mask}])
    np.testing.assert_allclose(masked["x"], np.abs(batch["x"][:, :3]).max(axis=(0, 1)))


def test_smoothing_keeps_fp32_outputs_and_shares_one_divisor() -> None:
    batches = outlier_channel_inputs()
    smoothed = smooth_activations(linear_model(), activation_absmax(linear_model(), batches), 0.5)
    assert [n.op_type for n in smoothed.graph.node].count("Mul") == 1  # W and W2 read one x / s
    x = batches[0]["x"]
    y, z = run(smoothed, x)
    np.testing.assert_allclose(y, x @ WEIGHT + BIAS, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(z, x @ (-2 * WEIGHT), rtol=1e-4, atol=1e-4)


def test_smoothing_cuts_int8_error_from_an_outlier_channel(tmp_path) -> None:
    batches = outlier_channel_inputs()
    onnx.save(linear_model(), tmp_path / "fp32.onnx")
    report = quantize_int8(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", calibration=batches)
    errors = report["calibration_logit_mse"]
    assert set(errors) == {"none", "0.3", "0.5"} and report["calibration_texts"] == 12
    assert report["smooth_alpha"] is not None
    assert min(errors["0.3"], errors["0.5"]) < errors["none"] / 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fp32.onnx", "int8.onnx"]
    # the written file is the chosen candidate: its error on new inputs is the smoothed one
    x = outlier_channel_inputs(4)[3]["x"]
    exact = x @ WEIGHT + BIAS
    chosen = ort.InferenceSession(str(tmp_path / "int8.onnx"), providers=["CPUExecutionProvider"])
    plain = quantize_matmuls_per_token(linear_model())
    chosen_error = np.abs(chosen.run(None, {"x": x})[0] - exact).mean()
    assert chosen_error < np.abs(run(plain, x)[0] - exact).mean() / 1.5
