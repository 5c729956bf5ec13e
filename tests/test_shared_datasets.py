"""prepare on the real shared datasets (ASAP-SAS set 1), skipped where ../shared is absent."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import REPO, SHARED_DATASETS, write_params

from hybridscore import prepare
from hybridscore.data import read_table
from hybridscore.params import load_params

ASAP_SET1 = SHARED_DATASETS / "asap-sas" / "set1"


@pytest.mark.skipif(not ASAP_SET1.exists(), reason=f"shared datasets absent: {ASAP_SET1} not found")
def test_prepare_reads_asap_set_with_given_splits(workspace: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "asap_to_csv", REPO / "scripts" / "asap_to_csv.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.asap_table(ASAP_SET1).to_csv("asap.csv", index=False)
    write_params(
        workspace,
        {
            "data": {
                "source": "asap.csv",
                "labels": ["0", "1", "2", "3"],
                "columns": {"reference": None, "label_rater2": "label_rater2"},
            }
        },
    )
    prepare.run(load_params())
    sizes = {s: len(read_table(f"data/prepared/{s}.csv")) for s in ("train", "val", "test")}
    assert sizes == {"train": 1338, "val": 334, "test": 557}
    val = read_table("data/prepared/val.csv")
    assert (val["label_rater2"] != "").all()
    assert set(val["label"]) <= {"0", "1", "2", "3"}
