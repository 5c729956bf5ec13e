"""Teacher vs student vs student-ONNX-INT8: size, CPU speed and test accuracy, in one run.

    python -m benchmarks.bench_scorer --teacher models/teacher --student models/student \\
        --onnx models/student_onnx --test data/prepared/test.csv [--json benchmarks/scorer.json]

Speed uses the same real test texts for every model, padded to exactly ``--seq`` tokens:
latency = median time of one batch of 1, throughput = ``--batch`` / median time of one such
batch; the models take turns in rounds, so load changes hit all alike. Accuracy,
macro-F1 and QWK use the human test split (dynamic padding, as ``hybridscore predict`` runs);
the student/teacher QWK ratio gets a paired bootstrap 95 % interval over the test rows.
INT8-vs-PyTorch prediction agreement is counted on every text of ``--agree-on`` (labels
unused; default: all prepared splits), since a 99 % goal cannot be judged on a few dozen rows.
Exits 0 with a "skipped" message when a model folder or the test file is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.machine import cpu_features, cpu_name, flags_text
from hybridscore.errors import HybridscoreError
from hybridscore.export import read_texts
from hybridscore.scoring import ONNX_INT8_FILE, Scorer

GOALS = {"student_speedup": 8.0, "student_qwk_ratio": 0.97, "int8_speedup": 2.0, "int8_agree": 0.99}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_scorer", description=__doc__)
    parser.add_argument("--teacher", default="models/teacher")
    parser.add_argument("--student", default="models/student")
    parser.add_argument("--onnx", default="models/student_onnx", help="exported student folder")
    parser.add_argument("--onnx-file", default=ONNX_INT8_FILE)
    parser.add_argument("--test", default="data/prepared/test.csv")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--seq", type=int, default=128, help="tokens per text for speed runs")
    parser.add_argument("--batch", type=int, default=32, help="batch size for throughput")
    parser.add_argument("--runs", type=int, default=30, help="timed batch-1 runs per model")
    parser.add_argument("--batch-runs", type=int, default=12, help="timed full batches per model")
    parser.add_argument("--max-test-rows", type=int, default=None, help="limit the test split")
    parser.add_argument(
        "--agree-on",
        nargs="*",
        default=[f"data/prepared/{split}.csv" for split in ("val", "test", "train")],
        help="CSVs whose texts count INT8 agreement (missing files are left out)",
    )
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples for the QWK CI")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads, at least 1 (default: all cores)"
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    return parser.parse_args(argv)


def machine() -> dict:
    """What the numbers were measured on."""
    import onnxruntime
    import torch

    return {
        "cpu": cpu_name(),
        "isa": cpu_features(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def time_interleaved(
    calls: dict[str, Callable[[], object]], runs: int, rounds: int = 3
) -> dict[str, float]:
    """Median seconds per call of each entry, timed in ``rounds`` turns of the models.

    In every round each model gets an untimed warm-up call and then its share of ``runs``
    timed calls, so a change in machine load during the run hits every model alike, and one
    runtime's idle worker threads (ONNX Runtime spins after a call) never slow the other's
    timed calls.
    """
    per_round = max(1, -(-runs // rounds))
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            call()
            for _ in range(per_round):
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def fixed_length_inputs(scorer: Scorer, texts: list[str], size: int, seq: int) -> dict:
    """``size`` real texts tokenised and padded/truncated to exactly ``seq`` tokens."""
    batch = [texts[i % len(texts)] for i in range(size)]
    encoded = scorer.tokenizer(batch, padding="max_length", truncation=True, max_length=seq,
                               return_tensors="np")  # fmt: skip
    arrays = {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()}
    arrays.setdefault("token_type_ids", np.zeros_like(arrays["input_ids"]))
    return arrays


def model_size(scorer: Scorer, folder: Path) -> tuple[int, float]:
    """(parameter count, MB on disk of the weights file(s))."""
    backend = scorer.backend
    if hasattr(backend, "model"):
        params = sum(p.numel() for p in backend.model.parameters())
        files = [*folder.glob("*.safetensors"), *folder.glob("*.bin")]
    else:
        import onnx
        from onnx import numpy_helper

        path = Path(scorer.source)
        graph = onnx.load(str(path), load_external_data=False).graph
        params = sum(numpy_helper.to_array(t).size for t in graph.initializer)
        files = [path]
    return params, sum(f.stat().st_size for f in files) / 1e6


def speed(scorers: dict[str, Scorer], texts: list[str], args) -> dict[str, dict]:
    """Batch-1 latency (ms) and batch-N throughput (texts/s) of each model, interleaved."""

    def runner(scorer: Scorer, size: int) -> Callable[[], object]:
        inputs = fixed_length_inputs(scorer, texts, size, args.seq)
        return lambda: scorer.backend.logits(inputs)

    print("timing batch 1 ...", file=sys.stderr)
    one = time_interleaved({n: runner(s, 1) for n, s in scorers.items()}, args.runs)
    print(f"timing batch {args.batch} ...", file=sys.stderr)
    many = time_interleaved({n: runner(s, args.batch) for n, s in scorers.items()}, args.batch_runs)
    return {
        name: {"latency_ms_b1": 1000 * one[name], "throughput_b": args.batch / many[name]}
        for name in scorers
    }


def agreement_texts(args, test_texts: list[str]) -> list[str]:
    """Every non-empty text of the ``--agree-on`` files that exist (the test texts if none)."""
    files = [path for path in args.agree_on if Path(path).is_file()]
    try:
        texts = [text for path in files for text in read_texts(path, args.text_column)]
    except HybridscoreError as exc:
        raise SystemExit(f"--agree-on: {exc}") from None
    return texts or test_texts


def qwk_ratio_interval(
    truth: list[int], teacher: np.ndarray, student: np.ndarray, num_labels: int, resamples: int
) -> tuple[float, float]:
    """Paired bootstrap 95 % interval of student QWK / teacher QWK over the test rows."""
    from hybridscore.metrics import classification_metrics

    rng = np.random.default_rng(0)
    truth_array, ratios = np.asarray(truth), []
    for _ in range(resamples):
        rows = rng.integers(0, len(truth_array), len(truth_array))
        kappas = [classification_metrics(truth_array[rows], predicted[rows], num_labels)["qwk"]
                  for predicted in (teacher, student)]  # fmt: skip
        if kappas[0] > 0:
            ratios.append(kappas[1] / kappas[0])
    if not ratios:
        return float("nan"), float("nan")
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def load_test(args) -> tuple[list[str], list[str]]:
    frame = pd.read_csv(args.test, dtype=str, keep_default_na=False)
    for column in (args.text_column, args.label_column):
        if column not in frame.columns:
            raise SystemExit(f"{args.test}: missing column {column!r}")
    frame = frame[frame[args.text_column].str.strip() != ""].head(args.max_test_rows)
    return frame[args.text_column].tolist(), frame[args.label_column].tolist()


def label_ids(scorer: Scorer, labels: list[str]) -> list[int]:
    index = {label: i for i, label in enumerate(scorer.labels)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise SystemExit(f"test labels {unknown} are not in the model's labels {scorer.labels}")
    return [index[label] for label in labels]


def quality(scorer: Scorer, texts: list[str], truth: list[int]) -> tuple[dict, np.ndarray]:
    from hybridscore.metrics import classification_metrics

    predicted = scorer.logits(texts).argmax(axis=1)
    return classification_metrics(truth, predicted, len(scorer.labels)), predicted


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def report(rows: dict[str, dict], ratios: dict, info: dict, args) -> str:
    lines = [
        f"Machine: {info['cpu']} ({flags_text(info['isa'])}), {info['cores']} cores "
        f"({info['torch_threads']} torch threads); "
        f"torch {info['torch']}, onnxruntime {info['onnxruntime']}; seq {args.seq}, "
        f"test rows {next(iter(rows.values()))['test_rows']}.",
        "",
        f"| model | params (M) | size (MB) | latency b1 (ms) | throughput b{args.batch} (texts/s)"
        " | accuracy | macro-F1 | QWK |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['params_m']:.1f} | {r['size_mb']:.0f} | {r['latency_ms_b1']:.1f} | "
            f"{r['throughput_b']:.1f} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} | "
            f"{r['qwk']:.3f} |"
        )
    lines += ["", "| ratio | value | goal |", "|---|---:|---:|"]
    goals = {
        "student_vs_teacher_throughput": f">= {GOALS['student_speedup']:g}x",
        "student_vs_teacher_qwk": f">= {GOALS['student_qwk_ratio']:.0%}",
        "int8_vs_student_throughput": f">= {GOALS['int8_speedup']:g}x",
        "int8_vs_student_agreement": f">= {GOALS['int8_agree']:.0%}",
    }
    for key, value in ratios.items():
        if isinstance(value, tuple):
            shown = "–".join(f"{v:.3f}" for v in value)
        else:
            shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        lines.append(f"| {key} | {shown} | {goals.get(key, '')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    folders = {name: Path(getattr(args, name)) for name in ("teacher", "student", "onnx")}
    missing = [f"{p} ({k})" for k, p in folders.items() if not (p / "config.json").is_file()]
    if not Path(args.test).is_file():
        missing.append(f"{args.test} (test split)")
    if missing:
        print(f"bench_scorer: skipped: not found: {', '.join(missing)}; run `dvc repro` first")
        return 0
    texts, labels = load_test(args)
    agree_texts = agreement_texts(args, texts)
    options = {"max_length": args.seq, "batch_size": args.batch, "threads": args.threads}
    try:
        scorers = {
            "teacher": Scorer.load(folders["teacher"], prefer_onnx=False, **options),
            "student": Scorer.load(folders["student"], prefer_onnx=False, **options),
            "student-onnx-int8": Scorer.load(folders["onnx"], onnx_file=args.onnx_file, **options),
        }
    except HybridscoreError as exc:  # bad --seq/--batch/--threads or an unreadable model
        raise SystemExit(f"bench_scorer: {exc}") from None
    folder_of = dict(zip(scorers, folders.values(), strict=True))
    rows, predictions = speed(scorers, texts, args), {}
    truth = label_ids(scorers["student"], labels)
    for name, scorer in scorers.items():
        params, mb = model_size(scorer, folder_of[name])
        scores, predictions[name] = quality(scorer, texts, truth)
        rows[name].update(params_m=params / 1e6, size_mb=mb, **scores, test_rows=len(texts))
    teacher, student, int8 = rows.values()
    agree_student, agree_int8 = (
        scorers[name].logits(agree_texts).argmax(axis=1)
        for name in ("student", "student-onnx-int8")
    )
    ratios = {
        "student_vs_teacher_latency": ratio(teacher["latency_ms_b1"], student["latency_ms_b1"]),
        "student_vs_teacher_throughput": ratio(student["throughput_b"], teacher["throughput_b"]),
        "student_vs_teacher_qwk": ratio(student["qwk"], teacher["qwk"]),
        "student_vs_teacher_qwk_ci95": qwk_ratio_interval(
            truth,
            predictions["teacher"],
            predictions["student"],
            len(scorers["student"].labels),
            args.bootstrap,
        ),
        "student_vs_teacher_size": ratio(student["size_mb"], teacher["size_mb"]),
        "int8_vs_student_latency": ratio(student["latency_ms_b1"], int8["latency_ms_b1"]),
        "int8_vs_student_throughput": ratio(int8["throughput_b"], student["throughput_b"]),
        "int8_vs_student_agreement": float((agree_student == agree_int8).mean()),
        "int8_vs_student_flips": int((agree_student != agree_int8).sum()),
        "int8_vs_student_agreement_texts": len(agree_texts),
        "int8_vs_student_agreement_test": float(
            (predictions["student"] == predictions["student-onnx-int8"]).mean()
        ),
        "int8_vs_student_qwk": ratio(int8["qwk"], student["qwk"]),
    }
    info = machine()
    print(report(rows, ratios, info, args))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        result = {"machine": info, "seq": args.seq, "batch": args.batch, "models": rows,
                  "ratios": ratios}  # fmt: skip
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
