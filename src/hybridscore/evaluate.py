"""Stage ``evaluate``: teacher and student on the human val/test splits only (dvclive)."""

from __future__ import annotations

from pathlib import Path

from hybridscore.data import read_labels, read_table
from hybridscore.errors import run_stage
from hybridscore.metrics import classification_metrics
from hybridscore.params import load_params
from hybridscore.predict import Scorer
from hybridscore.training import examples_from_table

SPLITS = {"val": Path("data/prepared/val.csv"), "test": Path("data/prepared/test.csv")}
LABELS = Path("data/prepared/labels.json")
MODELS = {"teacher": Path("models/teacher"), "student": Path("models/student")}
LIVE = Path("dvclive/evaluate")


def run() -> None:
    from dvclive import Live

    params = load_params()
    labels = read_labels(LABELS)
    trained = {"teacher": params.train_teacher, "student": params.distill}
    tables = {split: read_table(path) for split, path in SPLITS.items()}
    with Live(dir=str(LIVE), save_dvc_exp=False, dvcyaml=False) as live:
        for role, path in MODELS.items():
            scorer = Scorer.load(
                path,
                prefer_onnx=False,
                max_length=trained[role].max_length,
                batch_size=params.evaluate.batch_size,
                device="auto",
                threads=trained[role].cpu_threads,
            )
            for split, table in tables.items():
                examples = examples_from_table(table, labels, str(SPLITS[split]))
                logits = scorer.logits(examples.texts)
                predicted = logits.argmax(-1)
                scores = classification_metrics(examples.labels, predicted, len(labels))
                for name, value in scores.items():
                    live.log_metric(f"{role}/{split}/{name}", value, plot=False)
                live.log_sklearn_plot(
                    "confusion_matrix",
                    [labels[i] for i in examples.labels],
                    [labels[i] for i in predicted],
                    name=f"confusion_{role}_{split}.json",
                )
                print(
                    f"evaluate {role:<7} {split:<4} "
                    + " ".join(f"{k}={v:.3f}" for k, v in scores.items())
                )
        for split, table in tables.items():
            rater2 = table.get("label_rater2")
            if rater2 is None or (rater2 == "").any():
                continue  # the human-human ceiling needs a second rating on every row
            first = examples_from_table(table, labels, str(SPLITS[split]))
            second = examples_from_table(table.assign(label=rater2), labels, "label_rater2")
            ceiling = classification_metrics(first.labels, second.labels, len(labels))
            for name, value in ceiling.items():
                live.log_metric(f"human_rater2/{split}/{name}", value, plot=False)


def main(argv: list[str] | None = None) -> None:
    run_stage("evaluate", run)


if __name__ == "__main__":
    main()
