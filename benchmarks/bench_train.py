"""Teacher training speed: samples/s per max length, MFU (GPU), dynamic vs fixed padding.

    python -m benchmarks.bench_train [--model pypi:all-mpnet-base-v2] [--lengths 64 128]
        [--batch 8] [--steps 3] [--mixed-precision bf16] [--json benchmarks/train.json]

One training step = forward, loss, backward, AdamW step through an ``Accelerator`` (the
loop's own pieces: collator, length-grouped sampler, mixed precision). Texts are real
SciEntsBank answers. "fixed" batches are padded to ``max_length`` (every text repeated to
fill it: the worst case per length); "dynamic" batches are the loop's length-grouped,
padded-to-longest batches of the same texts. MFU = achieved FLOP/s over the GPU's peak
(6 · parameters + 12 · layers · hidden · sequence FLOPs per processed token).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader

from benchmarks.machine import cpu_name
from hybridscore.data import Examples
from hybridscore.modeling import load_classifier
from hybridscore.training.batches import (
    EncodedDataset,
    LengthGroupedSampler,
    make_collator,
    model_inputs,
)
from hybridscore.training.losses import cross_entropy_loss

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "scientsbank.csv"
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_train", description=__doc__)
    parser.add_argument("--model", default="pypi:all-mpnet-base-v2", help="teacher to time")
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--batch", type=int, default=None, help="default: 8 on CPU, 32 on GPU")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (3 CPU, 30 GPU)")
    parser.add_argument("--mixed-precision", default=None, help="default: no on CPU, bf16 GPU")
    parser.add_argument("--peak-tflops", type=float, default=None, help="GPU peak for MFU")
    parser.add_argument("--json", default=None, help="also write the results here")
    return parser.parse_args(argv)


def machine() -> str:
    """The device the numbers were measured on, in words."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    threads = f"{torch.get_num_threads()} torch threads ({torch.__version__})"
    return f"{cpu_name()}, {os.cpu_count()} cores visible, {threads}"


def flops_per_token(model, seq_len: int) -> float:
    """Training FLOPs per processed token: 6·N (dense) + 12·layers·hidden·seq (attention)."""
    config = model.config
    params = sum(p.numel() for n, p in model.named_parameters() if "embeddings" not in n)
    return 6 * params + 12 * config.num_hidden_layers * config.hidden_size * seq_len


def fixed_batches(dataset: EncodedDataset, batch: int, length: int, collate) -> list[dict]:
    """Batches of texts padded to exactly ``length`` tokens (repeated to fill it)."""
    items = []
    for i in range(len(dataset)):
        item = dataset[i]
        ids = item["input_ids"]
        body, end = ids[1:-1], ids[-1:]
        filled = (body * (length // max(len(body), 1) + 1))[: length - 2]
        items.append({"input_ids": ids[:1] + filled + end, "labels": item["labels"]})
    return [collate(items[i : i + batch]) for i in range(0, len(items) - batch + 1, batch)]


def dynamic_batches(dataset: EncodedDataset, batch: int, collate, seed: int = 0) -> list[dict]:
    """The training loop's own batches: length-grouped, padded to the longest in the batch."""
    sampler = LengthGroupedSampler(dataset.lengths, batch, seed)
    return list(DataLoader(dataset, batch_size=batch, sampler=sampler, collate_fn=collate))


def time_steps(model, optimizer, accelerator, batches: list[dict], steps: int) -> dict:
    """Samples/s and tokens/s over ``steps`` training steps (after one untimed warm-up)."""
    loss_fn = cross_entropy_loss()
    model.train()
    times, samples, tokens = [], 0, 0
    for i in range(steps + 1):
        batch = {k: v.to(accelerator.device) for k, v in batches[i % len(batches)].items()}
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        loss = loss_fn(model(**model_inputs(batch)).logits, batch)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        if accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step warms up kernels and allocators
            times.append(time.perf_counter() - started)
            samples += len(batch["labels"])
            tokens += batch["input_ids"].numel()
    total = sum(times)
    return {
        "samples_per_s": samples / total,
        "tokens_per_s": tokens / total,
        "padded_len": tokens / samples,
        "step_s_median": statistics.median(times),
    }


def main(argv: list[str] | None = None) -> int:
    from accelerate import Accelerator

    args = parse_args(argv)
    gpu = torch.cuda.is_available()
    batch = args.batch or (32 if gpu else 8)
    steps = args.steps or (30 if gpu else 3)
    precision = args.mixed_precision or ("bf16" if gpu else "no")
    accelerator = Accelerator(mixed_precision=precision, cpu=not gpu)
    table = pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)
    labels = sorted(set(table["label"]))
    model, tokenizer = load_classifier(args.model, labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    model, optimizer = accelerator.prepare(model, optimizer)
    collate = make_collator(tokenizer)
    rows = table.head(batch * (steps + 1) * 4)
    examples = Examples(rows["text"].tolist(), [labels.index(x) for x in rows["label"]])
    peak = args.peak_tflops or next(
        (v for k, v in PEAK_BF16_TFLOPS.items() if gpu and k in torch.cuda.get_device_name()),
        None,
    )

    print(f"machine: {machine()}")
    print(f"model: {args.model}, batch {batch}, mixed precision {precision}, {steps} steps")
    results = {"machine": machine(), "model": args.model, "batch": batch, "precision": precision}
    for length in args.lengths:
        dataset = EncodedDataset(examples, tokenizer, length)
        for mode in ("fixed", "dynamic"):
            batches = (
                fixed_batches(dataset, batch, length, collate)
                if mode == "fixed"
                else dynamic_batches(dataset, batch, collate)
            )
            result = time_steps(model, optimizer, accelerator, batches, steps)
            if peak:
                achieved = result["tokens_per_s"] * flops_per_token(
                    accelerator.unwrap_model(model), round(result["padded_len"])
                )
                result["mfu"] = achieved / (peak * 1e12)
            results[f"{mode}_{length}"] = result
            mfu = f", MFU {result['mfu']:.1%}" if "mfu" in result else ""
            print(
                f"max_length {length:>4} {mode:>7} padding: {result['samples_per_s']:8.1f} "
                f"samples/s ({result['padded_len']:.0f} tokens/text{mfu})",
                flush=True,
            )
        speedup = (
            results[f"dynamic_{length}"]["samples_per_s"]
            / results[f"fixed_{length}"]["samples_per_s"]
        )
        results[f"dynamic_speedup_{length}"] = speedup
        print(f"max_length {length:>4} dynamic over fixed padding: {speedup:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
