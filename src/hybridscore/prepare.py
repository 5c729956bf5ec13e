"""Stage ``prepare``: validate the data source, write train/val/test tables and the labels."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from hybridscore.data import (
    SPLITS,
    read_source,
    stratified_sample,
    write_json,
    write_labels,
    write_table,
)
from hybridscore.errors import run_stage
from hybridscore.params import Params, load_params

OUT_DIR = Path("data/prepared")
METRICS = Path("metrics/prepare.json")


def carve(table: pd.DataFrame, size: float | int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off ``size`` (a fraction or a row count) of ``table``, stratified by label."""
    stratify = table["label"] if table["label"].value_counts().min() >= 2 else None
    kept, carved = train_test_split(table, test_size=size, random_state=seed, stratify=stratify)
    return kept, carved


def split_table(table: pd.DataFrame, params: Params) -> dict[str, pd.DataFrame]:
    """Use the given splits; carve test, then val, out of train where the data lacks them."""
    seed, cfg = params.seed, params.prepare
    given = table.pop("split") if "split" in table else pd.Series("train", index=table.index)
    splits = {name: table[given == name] for name in SPLITS}
    if splits["test"].empty:
        splits["train"], splits["test"] = carve(splits["train"], cfg.test_fraction, seed)
    if splits["val"].empty:
        splits["train"], splits["val"] = carve(splits["train"], cfg.val_fraction, seed)
    return {
        name: stratified_sample(
            part, min(len(part), cfg.max_rows_per_split or len(part)), seed
        ).sort_values("id", kind="stable")
        for name, part in splits.items()
    }


def run(params: Params) -> None:
    table, labels = read_source(params.data)
    splits = split_table(table, params)
    overlap = set(splits["train"]["text"].str.lower()) & set(
        pd.concat([splits["val"], splits["test"]])["text"].str.lower()
    )
    for name, part in splits.items():
        write_table(part, OUT_DIR / f"{name}.csv")
    write_labels(labels, OUT_DIR / "labels.json")
    write_json(
        {
            "rows": {name: len(part) for name, part in splits.items()},
            "labels": {
                name: {label: int((part["label"] == label).sum()) for label in labels}
                for name, part in splits.items()
            },
            "train_texts_also_in_val_or_test": len(overlap),
        },
        METRICS,
    )
    print(f"prepare: {', '.join(f'{n}={len(p)}' for n, p in splits.items())} rows; labels {labels}")


def main(argv: list[str] | None = None) -> None:
    run_stage("prepare", lambda: run(load_params()))


if __name__ == "__main__":
    main()
