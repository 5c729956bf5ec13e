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

Given calibration inputs (training texts, never validation or test), ``quantize_int8`` can first
apply SmoothQuant's channel smoothing (Xiao et al. 2023): ``x @ W = (x / s) @ (s W)`` with
``s_c = max|x_c|^a / max|W_c|^(1 - a)``, which moves a few large activation channels (BERT's
GELU outputs have them) into the weights, whose columns have their own scales. It writes the
candidate (no smoothing or each ``a``) whose INT8 logits are closest to fp32 on calibration.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hybridscore import runtime
from hybridscore.errors import HybridscoreError

ACTIVATION_LEVELS = 127.0  # symmetric int8 range of one token row, stored as uint8 + 128
QUANTIZE_LINEAR_BLOCKED_OPSET = 21  # QuantizeLinear's block_size (one scale per row)
MS_DOMAIN = "com.microsoft"  # MatMulIntegerToFloat: ONNX Runtime's fused int8 GEMM + scale
SMOOTH_ALPHAS: tuple[float | None, ...] = (None, 0.3, 0.5)  # None = no smoothing

Feeds = dict[str, np.ndarray]  # one batch of ONNX inputs by name


def quantize_int8(
    source: Path,
    target: Path,
    *,
    per_token: bool = True,
    quantize_embeddings: bool = False,
    reduce_range: bool = True,
    calibration: Sequence[Feeds] | None = None,
    smooth_alphas: Sequence[float | None] = SMOOTH_ALPHAS,
    threads: int | None = None,
) -> dict:
    """Write ``source`` (fp32 ONNX) as dynamic INT8 to ``target``: every MatMul by a weight.

    ``reduce_range`` keeps weights to 7 bits: CPUs without VNNI (AVX2 only) multiply uint8
    activations by int8 weights in 16-bit sums that can saturate with full-range weights.
    ``quantize_embeddings`` also stores the embedding tables as INT8 (a ~2.5x smaller file,
    no faster, a few more near-tie flips). With ``calibration`` batches, each of
    ``smooth_alphas`` is tried and the one with the lowest logit MSE against fp32 is written;
    returns that choice and every candidate's error (``{}`` without calibration).
    ``threads`` fixes ONNX Runtime's CPU threads for those runs, so that the errors (and in a
    near tie the choice) cannot follow a machine's core count; none = all cores.
    """
    import onnx

    options = {"per_token": per_token, "embeddings": quantize_embeddings, "reduce": reduce_range}
    fp32, target = onnx.load(str(source)), Path(target)
    if not calibration:
        _write_int8(fp32, target, **options)
        return {}
    reference, absmax = _fp32_pass(fp32, calibration, threads)
    errors: dict[str, float] = {}
    best: tuple[float, float | None] | None = None
    for alpha in smooth_alphas:
        model = fp32 if alpha is None else smooth_activations(fp32, absmax, alpha)
        candidate = target.with_name(f"{target.stem}.candidate{target.suffix}")
        _write_int8(model, candidate, **options)
        error = float(np.mean((run_logits(candidate, calibration, threads) - reference) ** 2))
        errors["none" if alpha is None else str(alpha)] = error
        if best is None or error < best[0]:
            best = (error, alpha)
            os.replace(candidate, target)
        else:
            candidate.unlink()
    assert best is not None, "smooth_alphas must not be empty"
    rows = sum(len(next(iter(feeds.values()))) for feeds in calibration)
    return {"smooth_alpha": best[1], "calibration_texts": rows, "calibration_logit_mse": errors}


def _write_int8(model, target: Path, *, per_token: bool, embeddings: bool, reduce: bool) -> None:
    """Quantise a copy of ``model`` (an fp32 ``ModelProto``) into the file ``target``."""
    import onnx

    extra = ["Gather"] if embeddings else []
    if per_token:
        model = quantize_matmuls_per_token(_copy(model), reduce_range=reduce)
        if not extra:
            onnx.save(model, str(target))
            return
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        staged = Path(tmp) / "staged.onnx"
        onnx.save(model, str(staged))
        _quantize_dynamic(staged, target, extra if per_token else ["MatMul", *extra], reduce)


def _copy(model):
    copied = type(model)()
    copied.CopyFrom(model)
    return copied


def _multiplies_by_weight(node, weights: dict) -> bool:
    """Whether ``node`` is ``MatMul(x, W)`` with ``W`` a constant 2-D float matrix."""
    from onnx import TensorProto

    weight = weights.get(node.input[1]) if node.op_type == "MatMul" else None
    return weight is not None and len(weight.dims) == 2 and weight.data_type == TensorProto.FLOAT


def weight_matmuls(model) -> list:
    """The ``MatMul(x, W)`` nodes whose ``W`` is a constant 2-D float matrix."""
    weights = {t.name: t for t in model.graph.initializer}
    return [node for node in model.graph.node if _multiplies_by_weight(node, weights)]


def run_logits(model, calibration: Sequence[Feeds], threads: int | None = None) -> np.ndarray:
    """The first output of ``model`` (a ``ModelProto`` or a file) over all batches, stacked."""
    session = runtime.cpu_session(model, threads)
    return np.concatenate([session.run(None, feeds)[0] for feeds in calibration])


def activation_absmax(
    model, calibration: Sequence[Feeds], threads: int | None = None
) -> dict[str, np.ndarray]:
    """Each weight-MatMul input's largest |value| per channel over the calibration batches.

    Padding tokens (``attention_mask`` 0) are left out.
    """
    return _fp32_pass(model, calibration, threads)[1]


def _fp32_pass(
    model, calibration: Sequence[Feeds], threads: int | None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One run over the calibration batches: the first output (stacked) and ``absmax``."""
    from onnx import helper

    names = list(dict.fromkeys(node.input[0] for node in weight_matmuls(model)))
    probe = _copy(model)
    first_output = probe.graph.output[0].name
    outputs = {output.name for output in probe.graph.output}
    probe.graph.output.extend(
        helper.make_empty_tensor_value_info(name) for name in names if name not in outputs
    )
    session = runtime.cpu_session(probe, threads)
    firsts, absmax = [], {}
    for feeds in calibration:
        first, *inputs = session.run([first_output, *names], feeds)
        firsts.append(first)
        mask = feeds.get("attention_mask")
        for name, values in zip(names, inputs, strict=True):
            if mask is not None and values.shape[:2] == mask.shape:
                values = values[mask.astype(bool)]
            channel_max = np.abs(values.reshape(-1, values.shape[-1])).max(axis=0)
            absmax[name] = np.maximum(absmax.get(name, channel_max), channel_max)
    return np.concatenate(firsts), absmax


def smooth_activations(model, absmax: dict[str, np.ndarray], alpha: float):
    """A copy of ``model`` computing ``(x / s) @ (s W)`` for every weight MatMul input ``x``.

    ``s_c = max|x_c|^alpha / max|W_c|^(1 - alpha)`` over all weights that read ``x`` (attention's
    Q/K/V share one ``s``); the fp32 result is unchanged up to rounding.
    """
    from onnx import helper, numpy_helper

    model = _copy(model)
    weights = {t.name: t for t in model.graph.initializer}
    readers: dict[str, list] = {}
    for node in weight_matmuls(model):
        if node.input[0] in absmax:
            readers.setdefault(node.input[0], []).append(node)
    divisors = {}
    for x, nodes in readers.items():
        arrays = {node.input[1]: numpy_helper.to_array(weights[node.input[1]]) for node in nodes}
        weight_max = np.max([np.abs(a).max(axis=1) for a in arrays.values()], axis=0)
        x_max = np.maximum(absmax[x].astype(np.float64), 1e-5)
        s = x_max**alpha / np.maximum(weight_max, 1e-5) ** (1 - alpha)
        for name, array in arrays.items():
            weights[name].CopyFrom(
                numpy_helper.from_array((array * s[:, None]).astype(np.float32), name)
            )
        for node in nodes:
            node.input[0] = f"{x}_smoothed"
        divisors[x] = numpy_helper.from_array((1.0 / s).astype(np.float32), f"{x}_smooth_inverse")
    model.graph.initializer.extend(divisors.values())
    nodes = []
    for node in model.graph.node:  # each Mul goes right before the first MatMul that reads it
        for x in [x for x in divisors if f"{x}_smoothed" in node.input]:
            nodes.append(helper.make_node("Mul", [x, divisors.pop(x).name], [f"{x}_smoothed"]))
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


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
    from onnx import checker, helper, numpy_helper

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
        if not _multiplies_by_weight(node, weights):
            nodes.append(node)
            continue
        weight = weights[node.input[1]]
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
