"""Stage ``train_teacher``: fine-tune the teacher encoder on the mixed training data.

``python -m hybridscore.train_teacher`` trains in this process, or, when params ask for
several processes or name an Accelerate config file, re-runs itself under
``accelerate launch ... -m hybridscore.train_teacher --worker`` with the same arguments
(one fixed command for DVC). Validation rows are human; the test split is never read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hybridscore.data import Examples, examples_from_table, limit_rows, read_table
from hybridscore.params import Params, TeacherParams
from hybridscore.training import stage
from hybridscore.training.losses import LossFn, balanced_class_weights, cross_entropy_loss

TRAIN = Path("data/mixed/train.csv")


def _add_inputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", type=Path, default=TRAIN, help="mixed training rows")


def _read_train(params: Params, labels: list[str], args: argparse.Namespace) -> Examples:
    """The mixed training rows (human + synthetic), at most ``max_train_rows``."""
    limit = params.train_teacher.max_train_rows
    table = limit_rows(read_table(args.train), limit, params.seed)
    return examples_from_table(table, labels, str(args.train), params.data.input)


def _loss(cfg: TeacherParams, train: Examples, num_labels: int) -> LossFn:
    weights = balanced_class_weights(train.labels, num_labels) if cfg.class_weights else None
    return cross_entropy_loss(weights, cfg.label_smoothing)


def _data_summary(train: Examples, args: argparse.Namespace) -> dict:
    return {
        "training_rows": len(train.texts),
        "training_data": f"{args.train} (human + synthetic, see metrics/mix.json)",
    }


STAGE = stage.TrainingStage(
    section="train_teacher",
    role="teacher",
    model_field="model",
    out="models/teacher",
    live_dir="dvclive/train_teacher",
    metrics="metrics/train_teacher.json",
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
