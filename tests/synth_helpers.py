"""A scratch workspace for the synthesize tests: tiny prepared splits and params, in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from hybridscore.data import write_table

PROMPTS = Path(__file__).resolve().parents[1] / "src" / "hybridscore" / "prompts"
LABELS = ["incorrect", "partial", "correct"]
LEAK_MARK = "HELDOUTSECRET"  # in every val/test text; must never reach a prompt


def rows(split: str, per_label: int, questions: int = 2, mark: str = "") -> pd.DataFrame:
    """Distinct, realistic-looking responses for ``questions`` questions × ``LABELS``."""
    records = []
    for q in range(questions):
        for label in LABELS:
            for i in range(per_label):
                records.append(
                    {
                        "id": f"{split}-{q}-{label}-{i}",
                        "question_id": f"Q{q}",
                        "text": f"{mark}{split} student {i} says {label} thing {q * 100 + i} "
                        f"about plants {'and water' * (i % 3)}",
                        "label": label,
                        "source": "human",
                        "question": f"Question {q}: why do plants need light?",
                        "reference": f"Reference {q}: plants make food with light.",
                    }
                )
    return pd.DataFrame(records)


def make_workspace(root: Path, synthesize: dict[str, Any] | None = None) -> Path:
    """Write data/prepared/{train,val,test}.csv, labels.json and params.yaml under ``root``."""
    prepared = root / "data" / "prepared"
    prepared.mkdir(parents=True, exist_ok=True)
    write_table(rows("train", 4), prepared / "train.csv")
    for split in ("val", "test"):
        write_table(rows(split, 2, mark=LEAK_MARK), prepared / f"{split}.csv")
    (prepared / "labels.json").write_text(json.dumps({"labels": LABELS}))
    write_params(root, synthesize or {})
    return root


def write_params(root: Path, synthesize: dict[str, Any]) -> None:
    section = {
        "prompt_template": str(PROMPTS / "generate_responses.txt"),
        "grade_template": str(PROMPTS / "grade_response.txt"),
        "progress": False,
        **synthesize,
    }
    params = {"seed": 7, "data": {"source": "unused.csv"}, "synthesize": section}
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def openai_params(base_url: str, **overrides: Any) -> dict[str, Any]:
    """Params for the openai backend against a test server: fast retries, short timeouts."""
    return {
        "backend": "openai",
        "model": "gpt-4o",
        "base_url": base_url,
        "responses_per_label": 10,
        "responses_per_request": 5,
        "n": 1,
        "max_new_tokens": 400,
        "concurrency": 4,
        "timeout_s": 0.5,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "max_retries": 8,
        "max_reasks": 4,
        **overrides,
    }


def files_text(root: Path) -> str:
    """All text under ``root`` (data, metrics, params), for leak checks."""
    return "\n".join(
        p.read_text(encoding="utf-8", errors="replace") for p in root.rglob("*") if p.is_file()
    )
