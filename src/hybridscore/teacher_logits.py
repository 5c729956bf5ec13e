"""Stage ``teacher_logits``: score every transfer-set text with the teacher, once.

Writes ``id, logit_<label>...`` for the mixed training rows plus the rows the mix left out
(``distill.transfer_unused_*``); ``distill`` trains the student from this file. The texts are
given to the teacher as it was trained to read them (the ``data.input`` its folder records).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from hybridscore.data import atomic_path, pair_firsts, read_labels
from hybridscore.errors import run_stage
from hybridscore.params import load_params
from hybridscore.scoring import Scorer, check_model_folder, read_input_mode
from hybridscore.transfer import add_arguments, logit_columns, sources_from_args, transfer_table


def compute_teacher_logits(args: argparse.Namespace) -> None:
    """Score the transfer set with the teacher (PyTorch; a GPU if there is one)."""
    params = load_params()
    check_model_folder(args.teacher)  # before reading the tables
    mode = read_input_mode(args.teacher)  # what the teacher was trained to read
    labels = read_labels(args.labels)
    sources = sources_from_args(args)
    table = transfer_table(sources, params.distill, mode)
    teacher = Scorer.load(
        args.teacher,
        prefer_onnx=False,
        max_length=params.train_teacher.max_length,
        batch_size=params.train_teacher.eval_batch_size,
        threads=params.train_teacher.cpu_threads,
        device="auto",
    )
    logits = teacher.logits(table["text"].tolist(), pair_firsts(table, mode, str(sources.mixed)))
    frame = pd.DataFrame(logits, columns=logit_columns(labels))
    frame.insert(0, "id", table["id"].to_numpy())
    with atomic_path(args.out) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")
    print(f"teacher_logits: {len(frame)} texts scored by {args.teacher}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hybridscore teacher_logits", description=__doc__)
    add_arguments(parser)
    parser.add_argument("--labels", type=Path, default=Path("data/prepared/labels.json"))
    parser.add_argument("--teacher", type=Path, default=Path("models/teacher"))
    parser.add_argument("--out", type=Path, default=Path("data/distill/teacher_logits.csv"))
    args = parser.parse_args(argv)
    run_stage("teacher_logits", lambda: compute_teacher_logits(args))


if __name__ == "__main__":
    main()
