"""Stage ``train_teacher``: fine-tune the teacher encoder on the mixed training data."""

from __future__ import annotations

from pathlib import Path

from hybridscore.data import read_labels, read_table, write_json
from hybridscore.errors import run_stage
from hybridscore.modeling import load_classifier
from hybridscore.params import load_params
from hybridscore.training import (
    balanced_class_weights,
    cross_entropy_loss,
    examples_from_table,
    limit_rows,
    train_classifier,
)

TRAIN = Path("data/mixed/train.csv")
VAL = Path("data/prepared/val.csv")
LABELS = Path("data/prepared/labels.json")
OUT = Path("models/teacher")
LIVE = Path("dvclive/train_teacher")
METRICS = Path("metrics/train_teacher.json")


def run() -> None:
    from accelerate.utils import set_seed

    params = load_params()
    cfg = params.train_teacher
    labels = read_labels(LABELS)
    train = examples_from_table(
        limit_rows(read_table(TRAIN), cfg.max_train_rows, params.seed), labels, str(TRAIN)
    )
    val = examples_from_table(read_table(VAL), labels, str(VAL))
    set_seed(params.seed)  # the new classification head is initialised from this seed
    model, tokenizer = load_classifier(cfg.model, labels, field="train_teacher.model")
    weights = balanced_class_weights(train.labels, len(labels)) if cfg.class_weights else None
    loss = cross_entropy_loss(weights, cfg.label_smoothing)
    result = train_classifier(model, tokenizer, train, val, cfg, loss, params.seed, OUT, LIVE)
    write_json(
        {"best_epoch": result.best_epoch, "val": result.best_val, **result.stats},
        METRICS,
    )


def main(argv: list[str] | None = None) -> None:
    run_stage("train_teacher", run)


if __name__ == "__main__":
    main()
