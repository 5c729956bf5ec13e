"""The transfer set: which texts the teacher scores (``teacher_logits``) and the student
learns from (``distill``), defined once for both stages."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hybridscore.data import InputMode, pair_firsts, read_table
from hybridscore.params import DistillParams

LOGIT_PREFIX = "logit_"


@dataclass(frozen=True)
class TransferSources:
    """The tables the transfer set is drawn from (today's paths as defaults)."""

    mixed: Path = Path("data/mixed/train.csv")
    human_train: Path = Path("data/prepared/train.csv")
    synthetic: Path = Path("data/synthetic/rows.csv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--transfer``, ``--human-train``, ``--synthetic``: the transfer set's tables."""
    default = TransferSources()
    for flag, value, help_text in [
        ("--transfer", default.mixed, "the mixed training rows"),
        ("--human-train", default.human_train, "human training rows (unused ones may join)"),
        ("--synthetic", default.synthetic, "synthetic rows (unused ones may join)"),
    ]:
        parser.add_argument(flag, type=Path, default=value, help=help_text)


def sources_from_args(args: argparse.Namespace) -> TransferSources:
    return TransferSources(args.transfer, args.human_train, args.synthetic)


def transfer_table(
    sources: TransferSources, cfg: DistillParams, input_mode: InputMode = "text"
) -> pd.DataFrame:
    """The mixed training rows, plus (optionally) the training rows the mix left out.

    ``distill.transfer_unused_human`` adds the human training rows, and
    ``distill.transfer_unused_synthetic`` the synthetic rows, that are not in the mix. The
    extra rows keep their text (and question and reference) only (label ``""``): their label
    is the teacher's prediction. With a pair ``input_mode``, every row taken must have its
    first segment (checked file by file, so that a message names the file and its row).
    """
    table = read_table(sources.mixed)
    pair_firsts(table, input_mode, str(sources.mixed))
    extra = {
        sources.human_train: cfg.transfer_unused_human,
        sources.synthetic: cfg.transfer_unused_synthetic,
    }
    for path in (path for path, wanted in extra.items() if wanted):
        rows = read_table(path)
        unused = rows[~rows["id"].isin(table["id"])].assign(label="")
        pair_firsts(unused, input_mode, str(path))
        table = pd.concat([table, unused], ignore_index=True)
    return table


def logit_columns(labels: list[str]) -> list[str]:
    """The teacher-logits file's columns after ``id``, in label order."""
    return [f"{LOGIT_PREFIX}{label}" for label in labels]
