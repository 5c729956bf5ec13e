"""Stage ``prepare``: validate the data source, write train/val/test tables and the labels."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from hybridscore.data import (
    SPLITS,
    atomic_dir,
    stratified_sample,
    write_json,
    write_labels,
    write_table,
)
from hybridscore.errors import HybridscoreError, run_stage, warn
from hybridscore.params import Params, load_params
from hybridscore.sources import read_source

MIN_ROWS_PER_LABEL = 5  # below this in any split, metrics are noise: warn
LONG_TEXT_CHARS = 5000  # far beyond any max_length: warn


def carve(
    table: pd.DataFrame, size: float | int, seed: int, split: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off ``size`` (a fraction or a row count) of ``table``, stratified by label."""
    stratify = table["label"] if table["label"].value_counts().min() >= 2 else None
    try:
        kept, carved = train_test_split(
            table, test_size=size, random_state=seed, stratify=stratify
        )
    except ValueError:
        raise HybridscoreError(
            f"data: {len(table)} training row(s) are too few to carve a {split} split of "
            f"{size:.0%} from (params prepare.{split}_fraction); add rows or give a split column"
        ) from None
    return kept, carved


def split_table(table: pd.DataFrame, params: Params) -> dict[str, pd.DataFrame]:
    """Use the given splits; carve test, then val, out of train where the data lacks them."""
    seed, cfg = params.prepare.seed, params.prepare
    given = table.pop("split") if "split" in table else pd.Series("train", index=table.index)
    splits = {name: table[given == name] for name in SPLITS}
    if splits["train"].empty:
        counts = ", ".join(f"{name} {len(part)}" for name, part in splits.items())
        raise HybridscoreError(
            f"{params.data.source}: no training rows (column {params.data.columns.split!r}: "
            f"{counts}); mark some rows split=train"
        )
    if splits["test"].empty:
        splits["train"], splits["test"] = carve(splits["train"], cfg.test_fraction, seed, "test")
    if splits["val"].empty:
        splits["train"], splits["val"] = carve(splits["train"], cfg.val_fraction, seed, "val")
    return {
        name: stratified_sample(
            part, min(len(part), cfg.max_rows_per_split or len(part)), seed
        ).sort_values("id", kind="stable")
        for name, part in splits.items()
    }


def warn_if_thin(splits: dict[str, pd.DataFrame], labels: list[str], source: str) -> None:
    """Say so when a split is too small to learn or measure anything, or a text is huge."""
    thin = {
        name: {label: int((part["label"] == label).sum()) for label in labels}
        for name, part in splits.items()
    }
    if min(min(counts.values()) for counts in thin.values()) < MIN_ROWS_PER_LABEL:
        shown = "; ".join(f"{name} {counts}" for name, counts in thin.items())
        warn(
            "prepare",
            f"{source}: fewer than {MIN_ROWS_PER_LABEL} rows of some label in a split "
            f"({shown}): metrics on so few rows are noise",
        )
    lengths = pd.concat(splits.values())["text"].str.len()
    if lengths.max() > LONG_TEXT_CHARS:
        warn(
            "prepare",
            f"{source}: {int((lengths > LONG_TEXT_CHARS).sum())} text(s) over "
            f"{LONG_TEXT_CHARS} characters (the longest: {lengths.max()}); models read only "
            "the first max_length tokens of each",
        )


def run(params: Params, out_dir: Path, metrics: Path) -> None:
    """Write ``out_dir/{train,val,test}.csv`` and ``labels.json`` as one set, then the metrics.

    The folder is replaced in one step (``atomic_dir``): a kill, or a second run, at any moment
    leaves the previous complete set or the new one, never new training rows beside old test
    rows. The metrics describe the set and are written after it.
    """
    table, labels = read_source(params.data)
    splits = split_table(table, params)
    warn_if_thin(splits, labels, params.data.source)
    overlap = set(splits["train"]["text"].str.lower()) & set(
        pd.concat([splits["val"], splits["test"]])["text"].str.lower()
    )
    with atomic_dir(out_dir) as staging:
        for name, part in splits.items():
            write_table(part, staging / f"{name}.csv")
        write_labels(labels, staging / "labels.json")
    write_json(
        {
            "rows": {name: len(part) for name, part in splits.items()},
            "labels": {
                name: {label: int((part["label"] == label).sum()) for label in labels}
                for name, part in splits.items()
            },
            "train_texts_also_in_val_or_test": len(overlap),
        },
        metrics,
    )
    print(f"prepare: {', '.join(f'{n}={len(p)}' for n, p in splits.items())} rows; labels {labels}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hybridscore prepare", description=__doc__)
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("data/prepared"),
        help="folder for {train,val,test}.csv and labels.json, written as one set "
        "(default: %(default)s)",
    )
    parser.add_argument("--metrics", type=Path, default=Path("metrics/prepare.json"))
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_stage("prepare", lambda: run(load_params(), args.out_dir, args.metrics))


if __name__ == "__main__":
    main()
