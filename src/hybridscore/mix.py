"""Stage ``mix``: combine human and synthetic training rows at ``synthetic_ratio``.

With ``human_per_label`` (the human-label budget) that many human rows of each label are kept
(the same rows for every ratio, and a smaller budget's rows are part of every larger one), and
synthetic rows are added on top so that they make up ``synthetic_ratio`` of the mix.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from hybridscore.data import (
    human_budget,
    read_table,
    stratified_sample,
    write_json,
    write_table,
)
from hybridscore.errors import HybridscoreError, run_stage
from hybridscore.params import MixParams, load_params


def mix_sizes(
    n_human: int, n_synthetic: int, params: MixParams, human: Path, synthetic: Path
) -> tuple[int, int]:
    """Rows to take from each pool: the ratio exactly, at ``total_rows`` or the most it allows."""
    ratio = params.synthetic_ratio
    if params.human_per_label is not None:  # every budget row is kept, synthetic rows on top
        n_syn = n_synthetic if ratio == 1 else round(n_human * ratio / (1 - ratio))
        if n_syn > n_synthetic or n_syn + (0 if ratio == 1 else n_human) == 0:
            raise HybridscoreError(
                f"params mix: {n_human} human rows (human_per_label={params.human_per_label}) "
                f"at synthetic_ratio={ratio} need {n_syn} synthetic rows, but only "
                f"{n_synthetic} exist ({synthetic}); raise synthesize.responses_per_label"
            )
        return (0 if ratio == 1 else n_human), n_syn
    most = min(
        math.inf if ratio == 1 else n_human / (1 - ratio),
        math.inf if ratio == 0 else n_synthetic / ratio,
    )
    total = params.total_rows if params.total_rows is not None else math.floor(most + 1e-9)
    n_syn = round(total * ratio)
    n_hum = total - n_syn
    if n_hum > n_human or n_syn > n_synthetic or total == 0:
        raise HybridscoreError(
            f"params mix: {total} rows at synthetic_ratio={ratio} need {n_hum} human and "
            f"{n_syn} synthetic rows, but only {n_human} human ({human}) and {n_synthetic} "
            f"synthetic ({synthetic}) exist; lower mix.total_rows or raise "
            "synthesize.responses_per_label"
        )
    return n_hum, n_syn


def run(
    params: MixParams, seed: int, human_path: Path, synthetic_path: Path, out: Path, metrics: Path
) -> None:
    human = human_budget(read_table(human_path), params.human_per_label, seed)
    synthetic = read_table(synthetic_path)
    n_hum, n_syn = mix_sizes(len(human), len(synthetic), params, human_path, synthetic_path)
    mixed = pd.concat(
        [stratified_sample(human, n_hum, seed), stratified_sample(synthetic, n_syn, seed)]
    ).sample(frac=1.0, random_state=seed)
    write_table(mixed, out)
    composition = {
        "rows": len(mixed),
        "human_rows": n_hum,
        "synthetic_rows": n_syn,
        "synthetic_fraction": n_syn / len(mixed),
        "human_per_label": params.human_per_label,
        "labels": {
            source: mixed[mixed["source"] == source]["label"].value_counts().sort_index().to_dict()
            for source in ("human", "synthetic")
        },
    }
    write_json(composition, metrics)
    print(f"mix: {len(mixed)} rows = {n_hum} human + {n_syn} synthetic")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hybridscore mix", description=__doc__)
    parser.add_argument("--human", type=Path, default=Path("data/prepared/train.csv"))
    parser.add_argument("--synthetic", type=Path, default=Path("data/synthetic/rows.csv"))
    parser.add_argument("--out", type=Path, default=Path("data/mixed/train.csv"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/mix.json"))
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    def stage() -> None:
        params = load_params()
        run(params.mix, params.mix.seed, args.human, args.synthetic, args.out, args.metrics)

    run_stage("mix", stage)


if __name__ == "__main__":
    main()
