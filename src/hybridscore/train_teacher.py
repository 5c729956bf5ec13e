"""Stage ``train_teacher``: fine-tune the teacher encoder on the mixed training data.

``python -m hybridscore.train_teacher`` trains in this process, or, when params ask for
several processes or name an Accelerate config file, re-runs itself under
``accelerate launch ... -m hybridscore.train_teacher --worker`` (one fixed command for DVC).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hybridscore.data import read_labels, read_table
from hybridscore.errors import run_stage
from hybridscore.model_card import record_training
from hybridscore.modeling import load_classifier
from hybridscore.params import Params, load_params
from hybridscore.training import (
    Examples,
    balanced_class_weights,
    cross_entropy_loss,
    examples_from_table,
    limit_rows,
    relaunched,
    train_classifier,
)

SECTION = "train_teacher"
TRAIN = Path("data/mixed/train.csv")
VAL = Path("data/prepared/val.csv")
LABELS = Path("data/prepared/labels.json")
OUT = Path("models/teacher")
LIVE = Path("dvclive/train_teacher")
METRICS = Path("metrics/train_teacher.json")


def read_inputs(params: Params) -> tuple[list[str], Examples, Examples]:
    """Labels, training rows (mixed) and validation rows (human); never the test split."""
    labels = read_labels(LABELS)
    table = limit_rows(read_table(TRAIN), params.train_teacher.max_train_rows, params.seed)
    train = examples_from_table(table, labels, str(TRAIN))
    val = examples_from_table(read_table(VAL), labels, str(VAL))
    return labels, train, val


def run(worker: bool = False) -> None:
    from accelerate.utils import set_seed

    params = load_params()
    cfg = params.train_teacher
    labels, train, val = read_inputs(params)
    if relaunched(worker, cfg, SECTION, "model", cfg.model):
        return
    seed = cfg.training_seed(params.seed)
    set_seed(seed)  # the new classification head is initialised from this seed
    model, tokenizer = load_classifier(cfg.model, labels, field=f"{SECTION}.model")
    weights = balanced_class_weights(train.labels, len(labels)) if cfg.class_weights else None
    loss = cross_entropy_loss(weights, cfg.label_smoothing)
    result = train_classifier(
        model, tokenizer, train, val, cfg, loss, seed, OUT, LIVE, section=SECTION
    )
    record_training(
        result,
        metrics_path=METRICS,
        model_dir=OUT,
        role="teacher",
        base_model=cfg.model,
        params={**cfg.model_dump(), "seed": seed},
        data_summary={
            "training_rows": len(train.texts),
            "training_data": f"{TRAIN} (human + synthetic, see metrics/mix.json)",
        },
        validation_rows=len(val.texts),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hybridscore train_teacher", description=__doc__)
    parser.add_argument(
        "--worker", action="store_true", help="train here (set by the accelerate relaunch)"
    )
    args = parser.parse_args(argv)
    run_stage(SECTION, lambda: run(worker=args.worker))


if __name__ == "__main__":
    main()
