"""The teacher_logits stage: every transfer-set text scored once, at the paths it is given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_params
from scorer_helpers import LABELS, save_tiny_classifier

from hybridscore import teacher_logits
from hybridscore.data import write_labels, write_table
from hybridscore.scoring import Scorer


def table(ids: list[str], source: str) -> pd.DataFrame:
    texts = [f"the answer {i} is {source}" for i in ids]
    return pd.DataFrame(
        {"id": ids, "question_id": "q", "text": texts, "label": "low", "source": source}
    )


def test_logits_of_the_transfer_set_are_written_where_asked(workspace: Path) -> None:
    write_params(workspace, {"data": {"source": "data/source.csv"},
                             "distill": {"transfer_unused_human": True,
                                         "transfer_unused_synthetic": False}})  # fmt: skip
    teacher = save_tiny_classifier(workspace / "elsewhere" / "teacher")
    write_labels(LABELS, workspace / "in/labels.json")
    write_table(table(["m", "n"], "human"), workspace / "in/mixed.csv")
    write_table(table(["m", "h"], "human"), workspace / "in/human.csv")
    write_table(table(["s"], "synthetic"), workspace / "in/synthetic.csv")
    out = workspace / "out/logits.csv"
    teacher_logits.main(
        ["--transfer", "in/mixed.csv", "--human-train", "in/human.csv",
         "--synthetic", "in/synthetic.csv", "--labels", "in/labels.json",
         "--teacher", str(teacher), "--out", str(out)]
    )  # fmt: skip
    frame = pd.read_csv(out, dtype={"id": str})
    assert frame.columns.tolist() == ["id", *(f"logit_{label}" for label in LABELS)]
    assert frame["id"].tolist() == ["m", "n", "h"]  # the mix, then unused human rows only
    texts = [f"the answer {i} is human" for i in ["m", "n", "h"]]
    expected = Scorer.load(teacher, prefer_onnx=False).logits(texts)
    assert frame.iloc[:, 1:].to_numpy() == pytest.approx(expected, abs=1e-5)
    assert not np.isnan(frame.iloc[:, 1:].to_numpy()).any()
    assert not (workspace / "data/distill").exists()  # nothing at the default path
