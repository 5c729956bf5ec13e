"""Stage ``distill``: teach a small student from the teacher's soft labels plus hard labels.

``python -m hybridscore.distill logits`` (stage ``teacher_logits``) scores the transfer set
with the teacher once; ``python -m hybridscore.distill`` trains the student from those logits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from hybridscore.data import atomic_path, read_labels, read_table
from hybridscore.errors import HybridscoreError, run_stage
from hybridscore.model_card import record_training
from hybridscore.modeling import load_classifier
from hybridscore.params import Params, load_params
from hybridscore.predict import Scorer
from hybridscore.training import (
    Examples,
    distillation_loss,
    examples_from_table,
    limit_rows,
    relaunched,
    train_classifier,
)

TRANSFER = Path("data/mixed/train.csv")
HUMAN_TRAIN = Path("data/prepared/train.csv")
SYNTHETIC = Path("data/synthetic/rows.csv")
VAL = Path("data/prepared/val.csv")
LABELS = Path("data/prepared/labels.json")
TEACHER = Path("models/teacher")
LOGITS = Path("data/distill/teacher_logits.csv")
OUT = Path("models/student")
LIVE = Path("dvclive/distill")
METRICS = Path("metrics/distill.json")


def transfer_table(params: Params) -> pd.DataFrame:
    """The mixed training rows, plus (optionally) the training rows the mix left out.

    ``distill.transfer_unused_human`` adds the human training rows, and
    ``distill.transfer_unused_synthetic`` the synthetic rows, that are not in the mix. The
    extra rows keep their text only: their label is the teacher's prediction.
    """
    table = read_table(TRANSFER)
    extra = {
        HUMAN_TRAIN: params.distill.transfer_unused_human,
        SYNTHETIC: params.distill.transfer_unused_synthetic,
    }
    for path in (path for path, wanted in extra.items() if wanted):
        rows = read_table(path)
        unused = rows[~rows["id"].isin(table["id"])].assign(label="")
        table = pd.concat([table, unused], ignore_index=True)
    return table


def compute_teacher_logits() -> None:
    """Score every transfer-set text with the teacher once; write ``id, logit_<label>...``."""
    params = load_params()
    labels = read_labels(LABELS)
    table = transfer_table(params)
    teacher = Scorer.load(
        TEACHER,
        prefer_onnx=False,
        max_length=params.train_teacher.max_length,
        batch_size=params.train_teacher.eval_batch_size,
        threads=params.train_teacher.cpu_threads,
        device="auto",
    )
    logits = teacher.logits(table["text"].tolist())
    frame = pd.DataFrame(logits, columns=[f"logit_{label}" for label in labels])
    frame.insert(0, "id", table["id"].to_numpy())
    with atomic_path(LOGITS) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6f")
    print(f"teacher_logits: {len(frame)} texts scored by {TEACHER}")


def transfer_examples(params: Params, labels: list[str]) -> Examples:
    """The transfer set with its stored teacher logits, matched by id."""
    table = limit_rows(transfer_table(params), params.distill.max_train_rows, params.seed)
    logits = pd.read_csv(LOGITS, dtype={"id": str}).set_index("id")
    missing = set(table["id"]) - set(logits.index)
    if missing:
        raise HybridscoreError(
            f"{LOGITS}: no teacher logits for {len(missing)} row(s); rerun teacher_logits"
        )
    columns = [f"logit_{label}" for label in labels]
    teacher_logits = logits.loc[table["id"], columns].to_numpy(dtype=np.float32)
    teacher_labels = [labels[i] for i in teacher_logits.argmax(-1)]
    table = table.assign(label=table["label"].where(table["label"] != "", teacher_labels))
    examples = examples_from_table(table, labels, str(TRANSFER))
    examples.teacher_logits = teacher_logits
    return examples


def train_student(worker: bool = False) -> None:
    from accelerate.utils import set_seed

    params = load_params()
    cfg = params.distill
    labels = read_labels(LABELS)
    train = transfer_examples(params, labels)
    val = examples_from_table(read_table(VAL), labels, str(VAL))
    if relaunched(worker, cfg, "distill", "student", cfg.student):
        return
    seed = cfg.training_seed(params.seed)
    set_seed(seed)
    model, tokenizer = load_classifier(cfg.student, labels, "distill.student", cfg.num_layers)
    loss = distillation_loss(cfg.alpha, cfg.temperature)
    result = train_classifier(
        model, tokenizer, train, val, cfg, loss, seed, OUT, LIVE, section="distill"
    )
    record_training(
        result,
        metrics_path=METRICS,
        model_dir=OUT,
        role="student",
        base_model=cfg.student,
        params={**cfg.model_dump(), "seed": seed},
        data_summary={
            "transfer_rows": len(train.texts),
            "teacher": str(TEACHER),
        },
        validation_rows=len(val.texts),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hybridscore distill", description=__doc__)
    parser.add_argument("step", nargs="?", choices=["logits", "train"], default="train")
    parser.add_argument(
        "--worker", action="store_true", help="train here (set by the accelerate relaunch)"
    )
    args = parser.parse_args(argv)
    if args.step == "logits":
        run_stage("teacher_logits", compute_teacher_logits)
    else:
        run_stage("distill", lambda: train_student(worker=args.worker))


if __name__ == "__main__":
    main()
