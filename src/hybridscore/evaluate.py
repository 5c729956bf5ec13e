"""Stage ``evaluate`` (and ``evaluate_int8``): models on the human val/test splits only (dvclive).

For each model given (``--teacher``, ``--student``, ``--int8``: the deployed ONNX INT8 scorer,
a folder written by ``export``; none given: the teacher and student at their default paths)
and split: accuracy, macro-F1, QWK and ROC-AUC, a confusion matrix and a top-label
calibration table (``calibration.json``: bins and the expected calibration error, also logged
as ``ece``), a percentile bootstrap 95 % interval on QWK (1,000 resamples, ``seed``),
per-label precision/recall/F1 (``per_label.json``), how many labels it predicts at all
(``predicted_labels``: 1 is a one-class model) and, where a split has more than one
``question_id``, per-question accuracy and QWK (``per_question.json``). With ``--train``, the
two references as well: a TF-IDF + logistic-regression baseline fitted on those training rows,
scored the same way (``tfidf_lr``), and, where every row has a second rating, the second rater
against the first: the human-human ceiling (``human_rater2``); and a leakage audit
(``leakage.json``): no val/test text, nor a near duplicate of one, may be in those training
rows or in the ``--synthetic`` / ``--transfer`` tables, beyond the answers that the human
training rows share with val/test themselves (else the stage fails, writing nothing). Each
model reads the rows as it was trained to: the ``data.input`` its folder records (the response
alone, or the question or reference answer with it).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from hybridscore.baseline import fit_tfidf_lr, predict_proba
from hybridscore.data import (
    Examples,
    atomic_dir,
    examples_from_table,
    pair_firsts,
    read_labels,
    read_table,
    write_json,
)
from hybridscore.errors import HybridscoreError, run_stage
from hybridscore.leakage import audit, check
from hybridscore.metrics import (
    bootstrap_interval,
    calibration_bins,
    classification_metrics,
    per_label_metrics,
    roc_auc,
)
from hybridscore.params import Params, load_params
from hybridscore.scoring import ONNX_INT8_FILE, Scorer, check_model_folder, read_input_mode

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
    for name in ("synthetic", "transfer"):
        note = f"{name} rows to audit for leakage too (with --train; skipped if absent)"
        parser.add_argument(f"--{name}", type=Path, default=None, help=note)
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


def question_ids(table: pd.DataFrame) -> list[str] | None:
    """The rows' question ids where every row has one and there is more than one question."""
    ids = table.get("question_id")
    if ids is None or (ids == "").any() or ids.nunique() < 2:
        return None
    return ids.tolist()


def per_question(
    examples: Examples, predicted: np.ndarray, ids: list[str], num_labels: int
) -> dict[str, dict[str, float]]:
    """Rows, accuracy and QWK of each question's rows."""
    truth, ids_array = np.asarray(examples.labels), np.asarray(ids)
    result = {}
    for question in sorted(set(ids)):
        member = ids_array == question
        found = classification_metrics(truth[member], predicted[member], num_labels)
        result[question] = {"rows": int(member.sum()), "accuracy": found["accuracy"],
                            "qwk": found["qwk"]}  # fmt: skip
    return result


def leakage_report(
    args: argparse.Namespace, train: pd.DataFrame, splits: dict[str, Examples]
) -> dict[str, object]:
    """Audit the training rows and the optional synthetic/transfer tables against val/test;
    raise ``HybridscoreError`` on leakage."""
    tables = {"train": train}
    for name in ("synthetic", "transfer"):
        path = getattr(args, name)
        if path is not None and path.exists():
            tables[name] = read_table(path)
            if "text" not in tables[name].columns:
                raise HybridscoreError(f"{path}: no 'text' column to audit for leakage")
    used = {name: table["text"].tolist() for name, table in tables.items()}
    human = [  # human training answers, wherever they come from (a mix may leave some out)
        text
        for table in tables.values()
        if "source" in table.columns
        for text in table["text"][table["source"] == "human"]
    ]
    report = audit({split: examples.texts for split, examples in splits.items()}, used, human)
    check(report)
    return report


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
    tables = {split: read_table(path) for split, path in paths.items()}
    splits = {
        split: examples_from_table(tables[split], labels, str(paths[split])) for split in paths
    }
    firsts = {  # what each model reads with the responses (checked before any scoring)
        role: {
            split: pair_firsts(tables[split], read_input_mode(folder), str(paths[split]))
            for split in paths
        }
        for role, folder in models.items()
    }
    leakage = None
    if args.train is not None:  # before minutes of scoring: a leak fails the stage at once
        train_table = read_table(args.train)
        train = examples_from_table(train_table, labels, str(args.train))
        leakage = leakage_report(args, train_table, splits)

    def model(role: str, folder: Path) -> Callable[[list[str], str], np.ndarray]:
        """(texts, split) -> probabilities of one model, given what it reads with them."""
        scorer = load_scorer(role, folder, params)
        return lambda texts, split: scorer.predict_proba(texts, firsts[role][split])

    predictors = {role: model(role, folder) for role, folder in models.items()}
    if args.train is not None:
        baseline = fit_tfidf_lr(train.texts, train.labels, seed=params.seed)
        predictors["tfidf_lr"] = lambda texts, split: predict_proba(baseline, texts, len(labels))
    calibration: dict[str, dict[str, object]] = {}
    per_label: dict[str, dict[str, object]] = {}
    questions: dict[str, dict[str, object]] = {}
    with (  # the results appear together, replacing the previous ones, or not at all
        atomic_dir(args.live_dir) as staging,
        Live(dir=str(staging), save_dvc_exp=False, dvcyaml=False) as live,
    ):
        for role, predict in predictors.items():
            for split, examples in splits.items():
                probs = predict(examples.texts, split)
                predicted = probs.argmax(-1)
                found = scores(examples, probs)
                low, high = bootstrap_interval(
                    examples.labels, predicted, len(labels), seed=params.seed
                )
                calibrated = calibration_bins(examples.labels, probs)
                found = {**found, "qwk_ci_low": low, "qwk_ci_high": high,
                         "ece": calibrated["ece"],
                         "predicted_labels": int(np.unique(predicted).size)}  # fmt: skip
                ids = question_ids(tables[split])
                if ids is not None:
                    by_question = per_question(examples, predicted, ids, len(labels))
                    questions.setdefault(role, {})[split] = by_question
                    found["question_qwk_mean"] = float(
                        np.mean([q["qwk"] for q in by_question.values()])
                    )
                for name, value in found.items():
                    live.log_metric(f"{role}/{split}/{name}", value, plot=False)
                live.log_sklearn_plot(
                    "confusion_matrix",
                    [labels[i] for i in examples.labels],
                    [labels[i] for i in probs.argmax(-1)],
                    name=f"confusion_{role}_{split}.json",
                )
                calibration.setdefault(role, {})[split] = calibrated
                per_label.setdefault(role, {})[split] = per_label_metrics(
                    examples.labels, predicted, labels
                )
                shown = " ".join(
                    f"{k}={v:.3f}" + (f" [{low:.3f}, {high:.3f}]" if k == "qwk" else "")
                    for k, v in found.items()
                    if k not in ("qwk_ci_low", "qwk_ci_high", "predicted_labels")
                )
                if found["predicted_labels"] == 1:
                    shown += f" (one class: {labels[int(predicted[0])]})"
                print(f"evaluate {role:<8} {split:<4} {shown}")
        for split, table in tables.items() if args.train is not None else ():
            rater2 = table.get("label_rater2")
            if rater2 is None or (rater2 == "").any():
                continue  # the human-human ceiling needs a second rating on every row
            second = examples_from_table(table.assign(label=rater2), labels, "label_rater2")
            ceiling = classification_metrics(splits[split].labels, second.labels, len(labels))
            for name, value in ceiling.items():
                live.log_metric(f"human_rater2/{split}/{name}", value, plot=False)
        write_json(calibration, staging / "calibration.json")
        write_json(per_label, staging / "per_label.json")
        write_json(questions, staging / "per_question.json")  # {}: fewer than two questions
        if leakage is not None:
            live.log_metric("leakage/exact", leakage["exact"], plot=False)
            live.log_metric("leakage/near_duplicates", leakage["near_duplicates"], plot=False)
            live.log_metric("leakage/natural_duplicates", leakage["natural_duplicates"], plot=False)
            write_json(leakage, staging / "leakage.json")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_stage("evaluate", lambda: run(args))


if __name__ == "__main__":
    main()
