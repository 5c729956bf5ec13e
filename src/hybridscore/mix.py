"""Stage ``mix``: combine human and synthetic training rows at ``synthetic_ratio``."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from hybridscore.data import read_table, stratified_sample, write_json, write_table
from hybridscore.errors import HybridscoreError, run_stage
from hybridscore.params import MixParams, load_params

HUMAN = Path("data/prepared/train.csv")
SYNTHETIC = Path("data/synthetic/rows.csv")
OUT = Path("data/mixed/train.csv")
METRICS = Path("metrics/mix.json")


def mix_sizes(n_human: int, n_synthetic: int, params: MixParams) -> tuple[int, int]:
    """Rows to take from each pool: the ratio exactly, at ``total_rows`` or the most it allows."""
    ratio = params.synthetic_ratio
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
            f"{n_syn} synthetic rows, but only {n_human} human ({HUMAN}) and {n_synthetic} "
            f"synthetic ({SYNTHETIC}) exist; lower mix.total_rows or raise "
            "synthesize.responses_per_label"
        )
    return n_hum, n_syn


def run(params: MixParams, seed: int) -> None:
    human = read_table(HUMAN)
    synthetic = read_table(SYNTHETIC)
    n_hum, n_syn = mix_sizes(len(human), len(synthetic), params)
    mixed = pd.concat(
        [stratified_sample(human, n_hum, seed), stratified_sample(synthetic, n_syn, seed)]
    ).sample(frac=1.0, random_state=seed)
    write_table(mixed, OUT)
    composition = {
        "rows": len(mixed),
        "human_rows": n_hum,
        "synthetic_rows": n_syn,
        "synthetic_fraction": n_syn / len(mixed),
        "labels": {
            source: mixed[mixed["source"] == source]["label"].value_counts().sort_index().to_dict()
            for source in ("human", "synthetic")
        },
    }
    write_json(composition, METRICS)
    print(f"mix: {len(mixed)} rows = {n_hum} human + {n_syn} synthetic")


def main(argv: list[str] | None = None) -> None:
    def stage() -> None:
        params = load_params()
        run(params.mix, params.seed)

    run_stage("mix", stage)


if __name__ == "__main__":
    main()
