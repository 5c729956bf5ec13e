"""Export a saved classifier to ONNX (+ dynamic INT8) and check it agrees with PyTorch.

The output folder holds ``model.onnx``, ``model.int8.onnx``, the tokenizer and ``config.json``
(so ``hybridscore predict --model <folder>`` scores with it, reading the ``data.input`` the
model was trained with from it); the agreement of both ONNX files with the PyTorch model on a
list of texts (pairs, for a pair model) goes to a metrics JSON. Also the ``export`` stage.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hybridscore.data import InputMode, atomic_dir, pair_firsts, write_json
from hybridscore.errors import HybridscoreError, run_stage
from hybridscore.quantize import quantize_int8
from hybridscore.runtime import check_threads
from hybridscore.scoring import (
    DEFAULT_MAX_LENGTH,
    ONNX_FP32_FILE,
    ONNX_INT8_FILE,
    Scorer,
    TorchBackend,
    check_model_folder,
    encode_batch,
    length_batches,
    model_load_errors,
    read_input_mode,
)

SAMPLE_TEXTS = ["a short response", "a second, somewhat longer sample response to a question"]
MIN_INT8_AGREEMENT = 0.99
# Debug metadata of the dynamo exporter that names source files and line numbers (the
# checkout's path, this module's lines): it would make the file's bytes depend on both.
SOURCE_METADATA_KEYS = frozenset({"pkg.torch.onnx.stack_trace"})
SOURCE_LOCATION = re.compile(r"\.py\b|File \"")


def _logits_only(model, input_names: Sequence[str]):
    """Wrap ``model`` so positional tensor inputs map to ``input_names`` and only logits return."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(input_names, inputs, strict=True))).logits

    return LogitsOnly().eval()


def export_onnx(model, tokenizer, path: Path) -> list[str]:
    """Write ``model`` as ONNX with dynamic batch/sequence axes; return its input names.

    Inputs are ``input_ids``, ``attention_mask`` and, only where the model takes it,
    ``token_type_ids``; the output is ``logits``. ``model`` is switched to plain (``eager``)
    attention first: the SDPA form exports extra masking ops (Where/IsNaN over every
    attention matrix) that took ~10 % of ONNX Runtime's time on a 4-layer student.
    """
    import torch

    if getattr(model.config, "_attn_implementation", "eager") != "eager":
        model.set_attn_implementation("eager")

    input_names = list(TorchBackend(model).input_names)
    sample = tokenizer(SAMPLE_TEXTS, padding=True, return_tensors="pt")  # batch 2, seq > 2
    args = tuple(
        sample[name] if name in sample else torch.zeros_like(sample["input_ids"])
        for name in input_names
    )
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"torch\.onnx|copyreg")  # exporter chatter
            torch.onnx.export(
                _logits_only(model.eval(), input_names),
                args,
                str(path),
                dynamo=True,
                input_names=input_names,
                output_names=["logits"],
                dynamic_shapes=(tuple({0: batch, 1: seq} for _ in input_names),),
                external_data=False,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; name the model and the cause
        raise HybridscoreError(
            f"cannot export {type(model).__name__} to ONNX: {type(exc).__name__}: {exc}"
        ) from exc
    model.eval()  # the exporter may restore the wrapper's (training) mode recursively
    _strip_source_locations(path)
    return input_names


def _strip_source_locations(path: Path) -> None:
    """Drop every ``metadata_props`` entry that names source code (file paths, line numbers):
    on the model, its graphs (and subgraphs), nodes, values and functions."""
    import onnx

    model = onnx.load(str(path))

    def clean(props) -> None:
        kept = [
            (p.key, p.value)
            for p in props
            if p.key not in SOURCE_METADATA_KEYS and not SOURCE_LOCATION.search(p.value)
        ]
        if len(kept) != len(props):
            del props[:]
            for key, value in kept:
                props.add(key=key, value=value)

    def clean_nodes(nodes) -> None:
        for node in nodes:
            clean(node.metadata_props)
            for attribute in node.attribute:
                for graph in [attribute.g, *attribute.graphs]:
                    clean_graph(graph)

    def clean_graph(graph) -> None:
        clean(graph.metadata_props)
        for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
            clean(value.metadata_props)
        clean_nodes(graph.node)

    clean(model.metadata_props)
    clean_graph(model.graph)
    for function in model.functions:
        clean(function.metadata_props)
        for value in function.value_info:
            clean(value.metadata_props)
        clean_nodes(function.node)
    onnx.save(model, str(path))


def export_model(
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    check_texts: Sequence[str] | None = None,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    per_token: bool = True,
    quantize_embeddings: bool = False,
    reduce_range: bool = True,
    calibration_texts: Sequence[str] | None = None,
    threads: int | None = None,
    check_firsts: Sequence[str] | None = None,
    calibration_firsts: Sequence[str] | None = None,
) -> dict:
    """Export the classifier in ``model_dir`` into ``out_dir`` (atomically).

    Returns ``{"inputs": [...]}`` plus, given ``check_texts``, the agreement report of
    ``check_agreement`` (measured before the folder is moved into place). Given
    ``calibration_texts`` (training texts), the INT8 file is the smoothing candidate closest
    to fp32 on them (``quantize.quantize_int8``), reported under ``int8_calibration``.
    ``threads`` fixes the CPU threads of those runs, so that the file and the metrics cannot
    follow a machine's core count; none = all cores. A model trained with a pair
    ``data.input`` (its ``config.json`` records it, and the export's copy too) takes the first
    segment of each text as well: ``check_firsts`` and ``calibration_firsts``.
    """
    from hybridscore.modeling import load_saved_classifier, save_tokenizer

    check_threads(threads)  # before minutes of export, not at the agreement check after it
    model_dir = Path(model_dir)
    check_model_folder(model_dir)  # PyTorch weights, tokenizer and labels: all are exported
    try:
        model, tokenizer = load_saved_classifier(model_dir)
    except model_load_errors() as exc:
        raise HybridscoreError(f"{model_dir}: cannot load the saved model: {exc}") from None
    with atomic_dir(out_dir) as tmp:
        inputs = export_onnx(model, tokenizer, tmp / ONNX_FP32_FILE)
        result: dict = {"inputs": inputs}
        save_tokenizer(tokenizer, tmp)  # before calibration's calls leave truncation set in it
        model.config.save_pretrained(tmp)
        calibration = (
            tokenized_batches(
                tokenizer,
                calibration_texts,
                inputs,
                max_length=max_length,
                firsts=calibration_firsts,
            )
            if calibration_texts
            else None
        )
        report = quantize_int8(
            tmp / ONNX_FP32_FILE,
            tmp / ONNX_INT8_FILE,
            per_token=per_token,
            quantize_embeddings=quantize_embeddings,
            reduce_range=reduce_range,
            calibration=calibration,
            threads=threads,
        )
        if report:
            result["int8_calibration"] = report
        if (model_dir / "README.md").is_file():
            shutil.copy2(model_dir / "README.md", tmp / "README.md")
        if check_texts is not None:
            result.update(
                check_agreement(
                    model_dir,
                    tmp,
                    check_texts,
                    max_length=max_length,
                    threads=threads,
                    firsts=check_firsts,
                )
            )
    return result


def tokenized_batches(
    tokenizer,
    texts: Sequence[str],
    input_names: Sequence[str],
    *,
    max_length: int,
    size: int = 32,
    firsts: Sequence[str] | None = None,
) -> list[dict[str, np.ndarray]]:
    """``texts`` (with ``firsts``: as pairs) as ONNX input batches (length-sorted, so little
    padding), tokenised as ``Scorer`` does."""
    batches = []
    for _, batch, batch_firsts in length_batches(texts, firsts, size):
        encoded = encode_batch(tokenizer, batch, max_length, batch_firsts)
        batches.append({name: encoded[name] for name in input_names})
    return batches


def spread_sample(texts: Sequence[str], size: int) -> list[str]:
    """``size`` texts at even steps through ``texts`` (all of them if there are fewer)."""
    if len(texts) <= size:
        return list(texts)
    return [texts[i * len(texts) // size] for i in range(size)]


def agreement(reference: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """Argmax agreement rate and max absolute logit difference against ``reference``."""
    return {
        "agreement": float((reference.argmax(axis=1) == logits.argmax(axis=1)).mean()),
        "max_abs_logit_diff": float(np.abs(reference - logits).max()),
    }


def check_agreement(
    model_dir: str | os.PathLike[str],
    onnx_dir: str | os.PathLike[str],
    texts: Sequence[str],
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    batch_size: int = 32,
    threads: int | None = None,
    firsts: Sequence[str] | None = None,
) -> dict:
    """Compare ONNX fp32 and INT8 logits with PyTorch's on ``texts`` (with ``firsts``: as
    pairs, for a pair model); sizes in MB too."""
    if not texts:
        raise HybridscoreError("no texts to check ONNX agreement on")
    options = {"max_length": max_length, "batch_size": batch_size, "threads": threads}
    reference = Scorer.load(model_dir, prefer_onnx=False, **options).logits(texts, firsts)
    result: dict = {"texts": len(texts), "max_length": max_length}
    result["pytorch_mb"] = _size_mb(Path(model_dir), "*.safetensors", "*.bin")
    for key, name in (("onnx_fp32", ONNX_FP32_FILE), ("onnx_int8", ONNX_INT8_FILE)):
        logits = Scorer.load(onnx_dir, onnx_file=name, **options).logits(texts, firsts)
        result[key] = {**agreement(reference, logits), "file_mb": _size_mb(Path(onnx_dir), name)}
    return result


def _size_mb(folder: Path, *patterns: str) -> float:
    files = {f for pattern in patterns for f in folder.glob(pattern)}
    return round(sum(f.stat().st_size for f in files) / 1e6, 2)


def read_inputs(
    path: str | os.PathLike[str],
    column: str = "text",
    limit: int | None = None,
    input_mode: InputMode = "text",
) -> tuple[list[str], list[str] | None]:
    """The non-empty texts of one CSV column (the first ``limit`` of them) and, for a pair
    ``input_mode``, the first segment of each (``data.pair_firsts``; else None)."""
    path = Path(path)
    if not path.is_file():
        raise HybridscoreError(f"{path}: texts file not found (run the prepare stage)")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise HybridscoreError(f"{path}: cannot read as a UTF-8 CSV: {exc}") from None
    if column not in frame.columns:
        raise HybridscoreError(f"{path}: missing column {column!r} (--text-column)")
    texts = frame[column].str.strip()
    kept = frame[texts != ""].iloc[:limit]
    if kept.empty:
        raise HybridscoreError(f"{path}: column {column!r} has no non-empty texts")
    return texts[kept.index].tolist(), pair_firsts(kept, input_mode, str(path))


def read_texts(
    path: str | os.PathLike[str], column: str = "text", limit: int | None = None
) -> list[str]:
    """The non-empty texts of one CSV column (the first ``limit`` of them)."""
    return read_inputs(path, column, limit)[0]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hybridscore export",
        description="Export a saved classifier to ONNX + INT8 and check agreement with PyTorch.",
    )
    parser.add_argument("--model", default="models/student", help="saved model folder")
    parser.add_argument("--out", default="models/student_onnx", help="output folder")
    parser.add_argument(
        "--texts", default="data/prepared/val.csv", help="CSV of texts to compare on"
    )
    parser.add_argument("--metrics", default="metrics/export.json", help="agreement metrics JSON")
    parser.add_argument(
        "--calibration-texts",
        default=None,
        help="CSV of training texts: choose the INT8 activation smoothing on them (never "
        "validation or test texts); default: no smoothing",
    )
    parser.add_argument(
        "--calibration-size", type=int, default=256, help="calibration texts used (spread out)"
    )
    parser.add_argument("--text-column", default="text")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads of PyTorch and ONNX Runtime (fixed = the same file and metrics on "
        "any machine; default: all cores)",
    )
    parser.add_argument("--max-texts", type=int, default=None, help="compare on the first N texts")
    parser.add_argument(
        "--max-length", type=int, default=DEFAULT_MAX_LENGTH, help="tokens per text"
    )
    parser.add_argument(
        "--quantize-embeddings",
        action="store_true",
        help="INT8 embedding tables too: a smaller file, slightly lower agreement",
    )
    parser.add_argument(
        "--per-tensor",
        action="store_true",
        help="one activation scale per batch (ONNX Runtime's default): a little faster, "
        "about twice the logit error, predictions depend on the batch",
    )
    parser.add_argument(
        "--full-range",
        action="store_true",
        help="8-bit INT8 weights (default 7-bit, which avoids overflow on CPUs without VNNI)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    def run() -> None:
        check_model_folder(args.model)  # before reading its input mode and the texts
        mode = read_input_mode(args.model)  # pair models are checked on pairs
        texts, firsts = read_inputs(args.texts, args.text_column, args.max_texts, mode)
        if args.calibration_size < 1:
            raise HybridscoreError("--calibration-size must be at least 1")
        if args.threads is not None and args.threads < 1:
            raise HybridscoreError("--threads must be at least 1")
        calibration = calibration_firsts = None
        if args.calibration_texts:
            calibration, calibration_firsts = read_inputs(
                args.calibration_texts, args.text_column, input_mode=mode
            )
            calibration = spread_sample(calibration, args.calibration_size)
            if calibration_firsts is not None:
                calibration_firsts = spread_sample(calibration_firsts, args.calibration_size)
        metrics = export_model(
            args.model,
            args.out,
            texts,
            max_length=args.max_length,
            per_token=not args.per_tensor,
            quantize_embeddings=args.quantize_embeddings,
            reduce_range=not args.full_range,
            calibration_texts=calibration,
            threads=args.threads,
            check_firsts=firsts,
            calibration_firsts=calibration_firsts,
        )
        write_json(metrics, args.metrics)
        int8 = metrics["onnx_int8"]
        print(
            f"exported {args.model} -> {args.out}; INT8 agreement {int8['agreement']:.4f}, "
            f"max logit diff {int8['max_abs_logit_diff']:.4f} (fp32: "
            f"{metrics['onnx_fp32']['max_abs_logit_diff']:.2e})",
            file=sys.stderr,
        )
        if "int8_calibration" in metrics:
            chosen = metrics["int8_calibration"]["smooth_alpha"]
            print(f"INT8 activation smoothing alpha: {chosen}", file=sys.stderr)
        if int8["agreement"] < MIN_INT8_AGREEMENT:
            print(
                f"warning: INT8 agreement below {MIN_INT8_AGREEMENT:.0%}; "
                f"use --onnx-file {ONNX_FP32_FILE} with predict",
                file=sys.stderr,
            )

    run_stage("export", run)


if __name__ == "__main__":
    main()
