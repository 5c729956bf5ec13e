"""The transfer set (shared by teacher_logits and distill): the mix plus the rows it left out."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hybridscore.data import write_table
from hybridscore.params import DistillParams
from hybridscore.transfer import TransferSources, logit_columns, transfer_table


def rows(ids: list[str], label: str = "low") -> pd.DataFrame:
    return pd.DataFrame({"id": ids, "question_id": "q", "text": [f"t{i}" for i in ids],
                         "label": label, "source": "human"})  # fmt: skip


def test_rows_the_mix_left_out_join_unlabelled(tmp_path: Path) -> None:
    sources = TransferSources(tmp_path / "m.csv", tmp_path / "h.csv", tmp_path / "s.csv")
    write_table(rows(["a", "b"]), sources.mixed)
    write_table(rows(["a", "c"], "high"), sources.human_train)
    write_table(rows(["b", "d"], "high"), sources.synthetic)
    both = DistillParams(transfer_unused_human=True, transfer_unused_synthetic=True)
    table = transfer_table(sources, both)
    assert table["id"].tolist() == ["a", "b", "c", "d"]
    assert table["label"].tolist() == ["low", "low", "", ""]  # the teacher labels c and d
    none = DistillParams(transfer_unused_human=False, transfer_unused_synthetic=False)
    assert transfer_table(sources, none)["id"].tolist() == ["a", "b"]


def test_logit_columns_follow_the_label_order() -> None:
    assert logit_columns(["low", "high"]) == ["logit_low", "logit_high"]
