"""Convert one ASAP-SAS set from ../shared/datasets into a single hybridscore CSV.

Usage: python scripts/asap_to_csv.py SET [DATASETS_DIR] > data/external/asap_setN.csv

Writes columns id, question_id, question, text, label, label_rater2, split (train/val/test as
published). ASAP-SAS must never be committed: write it under a gitignored folder such as
data/external/, then point params data.source at it (data.labels: ['0', '1', '2', '3'],
data.columns.label_rater2: label_rater2, data.columns.reference: null).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "asap-sas"


def asap_table(set_dir: Path) -> pd.DataFrame:
    """All three published splits of one set, in hybridscore's source-CSV shape."""
    question = (set_dir / "item.txt").read_text(encoding="utf-8").strip()
    parts = []
    for split in ("train", "val", "test"):
        frame = pd.read_csv(set_dir / f"{split}.csv", dtype=str, keep_default_na=False)
        parts.append(
            pd.DataFrame(
                {
                    "id": "asap-" + frame["Id"],
                    "question_id": "asap-set" + frame["EssaySet"],
                    "question": question,
                    "text": frame["EssayText"],
                    "label": frame["Score1"],
                    "label_rater2": frame.get("Score2", ""),
                    "split": split,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    root = Path(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_DIR
    asap_table(root / f"set{sys.argv[1]}").to_csv(sys.stdout, index=False)


if __name__ == "__main__":
    main()
