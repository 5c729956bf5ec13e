"""Stage ``evaluate`` (and ``evaluate_int8``): models on the human val/test splits only (dvclive).

For each model given (``--teacher``, ``--student``, ``--int8``: the deployed ONNX INT8 scorer,
a folder written by ``export``; none given: the teacher and student at their default paths)
and split: accuracy, macro-F1, QWK and ROC-AUC, a confusion matrix
and a top-label calibration table (``calibration.json``: bins and the expected calibration
error). With ``--train``, the two references as well: a TF-IDF + logistic-regression baseline
fitted on those training rows, scored the same way (``tfidf_lr``), and, where every row has a
second rating, the second rater against the first: the human-human ceiling (``human_rater2``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hybridscore.baseline import fit_tfidf_lr, predict_proba
from hybridscore.data import (
    Examples,
    atomic_dir,
    examples_from_table,
    read_labels,
    read_table,
    write_json,
)
from hybridscore.errors import run_stage
from hybridscore.metrics import calibration_bins, classification_metrics, roc_auc
from hybridscore.params import Params, load_params
from hybridscore.scoring import ONNX_INT8_FILE, Scorer, check_model_folder

SPLITS = {"val": Path("data/prepared/val.csv"), "test": Path("data/prepared/test.csv")}
DEFAULT_MODELS = {"teacher": Path("models/teacher"), "student": Path("models/student")}
ROLES = ("teacher", "student", "int8")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hybridscore evaluate", description=__doc__)
    for split, path in SPLITS.items():
        parser.add_argument(f"--{split}", type=Path, default=path, help=f"{split} split CSV")
    parser.add_argument("--labels", type=Path, default=Path("data/prepared/labels.json"))
    for role in ROLES:
        parser.add_argument(f"--{role}", type=Path, default=None, help=f"{role} model folder")
    parser.add_argument("--train", type=Path, default=None, help="rows for the TF-IDF baseline")
    parser.add_argument("--live-dir", type=Path, default=Path("dvclive/evaluate"))
    return parser


def load_scorer(role: str, folder: Path, params: Params) -> Scorer:
    """The teacher with its training params; the student and its INT8 export with distill's."""
    trained = params.train_teacher if role == "teacher" else params.distill
    return Scorer.load(
        folder,
        onnx_file=ONNX_INT8_FILE if role == "int8" else None,
        prefer_onnx=role == "int8",
        max_length=trained.max_length,
        batch_size=params.evaluate.batch_size,
        device="auto",
        threads=trained.cpu_threads,
    )


def scores(examples: Examples, probs: np.ndarray) -> dict[str, float]:
    """Every quality metric of one model on one split (ROC-AUC where it is defined)."""
    result = classification_metrics(examples.labels, probs.argmax(-1), probs.shape[1])
    auc = roc_auc(examples.labels, probs)
    return result if auc is None else {**result, "roc_auc": auc}


def run(args: argparse.Namespace) -> None:
    from dvclive import Live

    params = load_params()
    labels = read_labels(args.labels)
    given = {role: getattr(args, role) for role in ROLES if getattr(args, role) is not None}
    models = given or DEFAULT_MODELS
    for role, folder in models.items():  # every one, before minutes of scoring the first
        onnx = folder / ONNX_INT8_FILE if role == "int8" else None
        check_model_folder(folder, onnx if onnx is not None and onnx.is_file() else None)
    paths = {split: getattr(args, split) for split in SPLITS}
    splits = {
        split: examples_from_table(read_table(path), labels, str(path))
        for split, path in paths.items()
    }
    predictors = {
        role: load_scorer(role, folder, params).predict_proba for role, folder in models.items()
    }
    if args.train is not None:
        train = examples_from_table(read_table(args.train), labels, str(args.train))
        baseline = fit_tfidf_lr(train.texts, train.labels, seed=params.seed)
        predictors["tfidf_lr"] = lambda texts: predict_proba(baseline, texts, len(labels))
    calibration: dict[str, dict[str, object]] = {}
    with (  # the results appear together, replacing the previous ones, or not at all
        atomic_dir(args.live_dir) as staging,
        Live(dir=str(staging), save_dvc_exp=False, dvcyaml=False) as live,
    ):
        for role, predict in predictors.items():
            for split, examples in splits.items():
                probs = predict(examples.texts)
                found = scores(examples, probs)
                for name, value in found.items():
                    live.log_metric(f"{role}/{split}/{name}", value, plot=False)
                live.log_sklearn_plot(
                    "confusion_matrix",
                    [labels[i] for i in examples.labels],
                    [labels[i] for i in probs.argmax(-1)],
                    name=f"confusion_{role}_{split}.json",
                )
                calibration.setdefault(role, {})[split] = calibration_bins(examples.labels, probs)
                shown = " ".join(f"{k}={v:.3f}" for k, v in found.items())
                print(f"evaluate {role:<8} {split:<4} {shown}")
        for split, path in paths.items() if args.train is not None else ():
            table = read_table(path)
            rater2 = table.get("label_rater2")
            if rater2 is None or (rater2 == "").any():
                continue  # the human-human ceiling needs a second rating on every row
            second = examples_from_table(table.assign(label=rater2), labels, "label_rater2")
            ceiling = classification_metrics(splits[split].labels, second.labels, len(labels))
            for name, value in ceiling.items():
                live.log_metric(f"human_rater2/{split}/{name}", value, plot=False)
        write_json(calibration, staging / "calibration.json")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_stage("evaluate", lambda: run(args))


if __name__ == "__main__":
    main()
