"""Dynamic INT8 quantisation of an exported ONNX classifier.

The default scales activations per token: each row of a MatMul's input gets its own
scale (its largest absolute value / 127), computed at run time, and every weight column its
own (7-bit by default). ONNX Runtime's ``quantize_dynamic`` scales a whole batch's activations
with one number, so one outlier token coarsens every other token's values and a prediction
depends on the other texts in its batch; per-token scales halve the logit error of our
students and make INT8 predictions independent of the batch; they run ~10 % slower.
``per_token=False`` gives ONNX Runtime's per-tensor scheme.

Per-token graph, for each input ``x`` of a MatMul by a constant weight (shared by the
MatMuls that read ``x``, e.g. attention's query/key/value)::

    s  = max(|x|, axis=-1) / 127                         # one scale per token row
    xq = QuantizeLinear(x, s, zero_point=128, axis=-1, block_size=K)     # uint8
    y  = MatMulIntegerToFloat(xq, wq, 1, w_scale, 128) * s
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from hybridscore.errors import HybridscoreError

ACTIVATION_LEVELS = 127.0  # symmetric int8 range of one token row, stored as uint8 + 128
QUANTIZE_LINEAR_BLOCKED_OPSET = 21  # QuantizeLinear's block_size (one scale per row)
MS_DOMAIN = "com.microsoft"  # MatMulIntegerToFloat: ONNX Runtime's fused int8 GEMM + scale


def quantize_int8(
    source: Path,
    target: Path,
    *,
    per_token: bool = True,
    quantize_embeddings: bool = False,
    reduce_range: bool = True,
) -> None:
    """Write ``source`` (fp32 ONNX) as dynamic INT8 to ``target``: every MatMul by a weight.

    ``reduce_range`` keeps weights to 7 bits: CPUs without VNNI (AVX2 only) multiply uint8
    activations by int8 weights in 16-bit sums that can saturate with full-range weights.
    ``quantize_embeddings`` also stores the embedding tables as INT8 (a ~2.5x smaller file,
    no faster, a few more near-tie flips).
    """
    import onnx

    embeddings = ["Gather"] if quantize_embeddings else []
    if not per_token:
        _quantize_dynamic(source, target, ["MatMul", *embeddings], reduce_range)
        return
    model = quantize_matmuls_per_token(onnx.load(str(source)), reduce_range=reduce_range)
    if not embeddings:
        onnx.save(model, str(target))
        return
    with tempfile.TemporaryDirectory(dir=Path(target).parent) as tmp:
        onnx.save(model, os.path.join(tmp, "matmuls.onnx"))
        _quantize_dynamic(Path(tmp) / "matmuls.onnx", target, embeddings, reduce_range)


def _quantize_dynamic(source: Path, target: Path, op_types: list[str], reduce_range: bool) -> None:
    """ONNX Runtime's dynamic quantisation (per-channel int8 weights) of ``op_types``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quant_logger = logging.getLogger()
    level = quant_logger.level
    quant_logger.setLevel(logging.ERROR)  # silence the "consider pre-processing" advice
    try:
        quantize_dynamic(
            source,
            target,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=reduce_range,
            op_types_to_quantize=op_types,
        )
    finally:
        quant_logger.setLevel(level)


def quantize_weight(
    weight: np.ndarray, *, reduce_range: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-column int8 of a ``[K, N]`` weight: ``(int8 values, float32 scales)``.

    7-bit (±64, as ONNX Runtime's ``reduce_range``) unless ``reduce_range`` is False (±127).
    """
    levels = 64.0 if reduce_range else 127.0
    absmax = np.abs(weight).max(axis=0).astype(np.float64)
    scale = np.where(absmax > 0, absmax / levels, 1.0)
    values = np.clip(np.rint(weight / scale), -levels, levels).astype(np.int8)
    return values, scale.astype(np.float32)


def quantize_matmuls_per_token(model, *, reduce_range: bool = True):
    """Rewrite every ``MatMul(x, W)`` with a constant 2-D float ``W`` into per-token INT8.

    Returns the changed ``onnx.ModelProto``; other nodes (attention's activation-by-activation
    MatMuls, embeddings, layer norms) stay fp32.
    """
    from onnx import TensorProto, checker, helper, numpy_helper

    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([-1], np.int64), "pt_last_axis"),
            numpy_helper.from_array(np.array(1e-12, np.float32), "pt_min_absmax"),
            numpy_helper.from_array(np.array(ACTIVATION_LEVELS, np.float32), "pt_levels"),
            numpy_helper.from_array(np.array(1.0, np.float32), "pt_one"),
            numpy_helper.from_array(np.array(128, np.uint8), "pt_zero_point"),
        ]
    )
    nodes, quantized_inputs, quantized_weights = [], set(), {}
    for node in graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or len(weight.dims) != 2 or weight.data_type != TensorProto.FLOAT:
            nodes.append(node)
            continue
        x, w = node.input[0], node.input[1]
        if x not in quantized_inputs:  # one quantisation per input, before its first MatMul
            quantized_inputs.add(x)
            nodes += _per_token_nodes(helper, x, block_size=weight.dims[0])
        if w not in quantized_weights:
            array = numpy_helper.to_array(weight)
            values, scale = quantize_weight(array, reduce_range=reduce_range)
            quantized_weights[w] = [
                numpy_helper.from_array(values, f"{w}_pt_int8"),
                numpy_helper.from_array(scale, f"{w}_pt_scale"),
            ]
        y = node.output[0]
        nodes += [
            helper.make_node(
                "MatMulIntegerToFloat",
                [f"{x}_pt_uint8", f"{w}_pt_int8", "pt_one", f"{w}_pt_scale", "pt_zero_point"],
                [f"{y}_per_token"],
                domain=MS_DOMAIN,
                name=f"{node.name or y}_int8",
            ),
            helper.make_node("Mul", [f"{y}_per_token", f"{x}_pt_scale"], [y], name=f"{y}_rescale"),
        ]
    if not quantized_weights:
        raise HybridscoreError("the ONNX graph has no MatMul by a weight matrix to quantise")
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept + [t for pair in quantized_weights.values() for t in pair])
    _require_opsets(model, helper)
    checker.check_model(model)
    return model


def _per_token_nodes(helper, x: str, *, block_size: int) -> list:
    """Nodes making ``{x}_pt_uint8`` (zero point 128) and ``{x}_pt_scale`` (one per row)."""
    absmax, scale, zero_point = f"{x}_pt_absmax", f"{x}_pt_scale", f"{x}_pt_zero_point"
    return [
        helper.make_node("Abs", [x], [f"{x}_pt_abs"]),
        helper.make_node("ReduceMax", [f"{x}_pt_abs", "pt_last_axis"], [absmax], keepdims=1),
        helper.make_node("Max", [absmax, "pt_min_absmax"], [f"{absmax}_safe"]),
        helper.make_node("Div", [f"{absmax}_safe", "pt_levels"], [scale]),
        helper.make_node("Shape", [scale], [f"{scale}_shape"]),
        helper.make_node("Expand", ["pt_zero_point", f"{scale}_shape"], [zero_point]),
        helper.make_node(
            "QuantizeLinear",
            [x, scale, zero_point],
            [f"{x}_pt_uint8"],
            axis=-1,
            block_size=block_size,
        ),
    ]


def _require_opsets(model, helper) -> None:
    """Blocked QuantizeLinear needs ONNX opset 21; MatMulIntegerToFloat the Microsoft domain."""
    domains = {opset.domain: opset for opset in model.opset_import}
    default = domains.get("") or domains.get("ai.onnx")
    if default is None:
        model.opset_import.append(helper.make_opsetid("", QUANTIZE_LINEAR_BLOCKED_OPSET))
    elif default.version < QUANTIZE_LINEAR_BLOCKED_OPSET:
        default.version = QUANTIZE_LINEAR_BLOCKED_OPSET
    if MS_DOMAIN not in domains:
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
