"""Write one ASAP-SAS set from ../shared/datasets as a single hybridscore CSV.

Usage: python scripts/asap_to_csv.py SET [DATASETS_DIR] > data/external/asap_setN.csv

Not needed to train on a set: ``data.source: asap-sas:../shared/datasets/asap-sas/setN`` reads
the folder directly (``hybridscore.sources.read_asap_sas``, which this calls). Columns: id,
question_id, question, text, label, label_rater2, split. ASAP-SAS must never be committed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hybridscore.sources import read_asap_sas

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "asap-sas"
COLUMNS = ["id", "question_id", "question", "text", "label", "label_rater2", "split"]


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    root = Path(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_DIR
    table, _ = read_asap_sas(root / f"set{sys.argv[1]}")
    table.reindex(columns=COLUMNS, fill_value="").to_csv(sys.stdout, index=False)


if __name__ == "__main__":
    main()
