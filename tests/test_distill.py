"""Distillation: the transfer set, and teacher logits matched to rows by id."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import write_params

from hybridscore import distill
from hybridscore.data import write_labels, write_table
from hybridscore.errors import HybridscoreError
from hybridscore.params import load_params
from hybridscore.transfer import TransferSources

SOURCES = TransferSources()  # today's paths, as the stage's defaults
LABELS_FILE = Path("data/prepared/labels.json")


def test_transfer_examples_match_logits_by_id(workspace: Path) -> None:
    write_params(  # the mixed rows only
        workspace,
        {"data": {"source": "data/source.csv"}, "distill": {"transfer_unused_human": False}},
    )
    params = load_params()
    labels = ["low", "mid", "high"]
    write_labels(labels, LABELS_FILE)
    table = pd.DataFrame(
        {
            "id": ["b", "a"],
            "question_id": "q",
            "text": ["tb", "ta"],
            "label": ["high", "low"],
            "source": "human",
        }
    )
    write_table(table, SOURCES.mixed)
    distill.LOGITS.parent.mkdir(parents=True)
    pd.DataFrame(
        {
            "id": ["a", "b"],
            "logit_low": [1.0, 4.0],
            "logit_mid": [2.0, 5.0],
            "logit_high": [3.0, 6.0],
        }
    ).to_csv(distill.LOGITS, index=False)
    examples = distill.transfer_examples(params, labels)
    assert examples.texts == ["tb", "ta"] and examples.labels == [2, 0]
    assert examples.teacher_logits.tolist() == [[4.0, 5.0, 6.0], [1.0, 2.0, 3.0]]

    write_table(table.assign(id=["b", "c"]), SOURCES.mixed)
    with pytest.raises(HybridscoreError, match="no teacher logits for 1 row"):
        distill.transfer_examples(params, labels)


@pytest.mark.parametrize(
    ("flags", "extra"),
    [
        ({}, []),
        ({"transfer_unused_human": True}, ["th"]),
        ({"transfer_unused_synthetic": True}, ["ts"]),
        ({"transfer_unused_human": True, "transfer_unused_synthetic": True}, ["th", "ts"]),
    ],
)
def test_rows_the_mix_left_out_join_the_transfer_set_with_teacher_labels(
    workspace: Path, flags: dict, extra: list[str]
) -> None:
    off = {"transfer_unused_human": False, "transfer_unused_synthetic": False}
    write_params(workspace, {"data": {"source": "data/source.csv"}, "distill": off | flags})
    params = load_params()
    labels = ["low", "high"]
    write_labels(labels, LABELS_FILE)

    def table(ids: list[str], source: str) -> pd.DataFrame:
        texts = [f"t{i}" for i in ids]
        return pd.DataFrame({"id": ids, "question_id": "q", "text": texts, "label": "low",
                             "source": source})  # fmt: skip

    write_table(pd.concat([table(["m"], "human"), table(["n"], "synthetic")]), SOURCES.mixed)
    write_table(table(["m", "h"], "human"), SOURCES.human_train)
    write_table(table(["n", "s"], "synthetic"), SOURCES.synthetic)
    distill.LOGITS.parent.mkdir(parents=True)
    pd.DataFrame(
        {"id": ["m", "n", "h", "s"], "logit_low": [0.0] * 4, "logit_high": [1.0, 1.0, 2.0, 2.0]}
    ).to_csv(distill.LOGITS, index=False)
    examples = distill.transfer_examples(params, labels)
    # mixed rows keep their label; rows the mix left out take the teacher's ("high")
    assert examples.texts == ["tm", "tn", *extra]
    assert examples.labels == [0, 0, *[1] * len(extra)]
