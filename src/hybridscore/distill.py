"""Stage ``distill``: teach a small student from the teacher's soft labels plus hard labels.

``python -m hybridscore.distill`` trains the student on the transfer set (see
``hybridscore.transfer``) with the logits the ``teacher_logits`` stage stored, or, when params
ask for several processes or name an Accelerate config file, re-runs itself under
``accelerate launch ... -m hybridscore.distill --worker`` with the same arguments.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from hybridscore.data import Examples, examples_from_table, limit_rows
from hybridscore.errors import HybridscoreError
from hybridscore.params import DistillParams, Params
from hybridscore.training import stage
from hybridscore.training.losses import LossFn, distillation_loss
from hybridscore.transfer import (
    TransferSources,
    add_arguments,
    logit_columns,
    sources_from_args,
    transfer_table,
)

LOGITS = Path("data/distill/teacher_logits.csv")
TEACHER = Path("models/teacher")
SOURCES = TransferSources()


def transfer_examples(
    params: Params,
    labels: list[str],
    sources: TransferSources = SOURCES,
    logits_path: Path = LOGITS,
) -> Examples:
    """The transfer set with its stored teacher logits, matched by id (and, for a pair
    ``data.input``, the student's first segments)."""
    cfg, mode = params.distill, params.data.input
    table = limit_rows(transfer_table(sources, cfg, mode), cfg.max_train_rows, params.seed)
    logits = pd.read_csv(logits_path, dtype={"id": str}).set_index("id")
    missing = set(table["id"]) - set(logits.index)
    if missing:
        raise HybridscoreError(
            f"{logits_path}: no teacher logits for {len(missing)} row(s); rerun teacher_logits"
        )
    teacher_logits = logits.loc[table["id"], logit_columns(labels)].to_numpy(dtype=np.float32)
    teacher_labels = [labels[i] for i in teacher_logits.argmax(-1)]
    table = table.assign(label=table["label"].where(table["label"] != "", teacher_labels))
    examples = examples_from_table(table, labels, str(sources.mixed), mode)
    examples.teacher_logits = teacher_logits
    return examples


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)
    parser.add_argument("--logits", type=Path, default=LOGITS, help="the teacher's logits")
    parser.add_argument("--teacher", type=Path, default=TEACHER, help="named in the model card")


def _read_train(params: Params, labels: list[str], args: argparse.Namespace) -> Examples:
    return transfer_examples(params, labels, sources_from_args(args), args.logits)


def _loss(cfg: DistillParams, train: Examples, num_labels: int) -> LossFn:
    return distillation_loss(cfg.alpha, cfg.temperature)


def _data_summary(train: Examples, args: argparse.Namespace) -> dict:
    return {"transfer_rows": len(train.texts), "teacher": str(args.teacher)}


STAGE = stage.TrainingStage(
    section="distill",
    role="student",
    model_field="student",
    out="models/student",
    live_dir="dvclive/distill",
    metrics="metrics/distill.json",
    add_inputs=_add_inputs,
    read_train=_read_train,
    loss=_loss,
    data_summary=_data_summary,
    description=__doc__,
)


def main(argv: list[str] | None = None) -> None:
    stage.main(STAGE, argv)


if __name__ == "__main__":
    main()
