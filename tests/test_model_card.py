"""The model card: YAML front matter a hub can read, and every section a reader needs."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from hybridscore.model_card import record_training, write_model_card
from hybridscore.training.loop import TrainResult

PARAMS = {"student": "pypi:all-minilm-l6-v2", "alpha": 0.5, "temperature": 2.0,
          "learning_rate": 3e-5, "schedule": {"epochs": 4, "warmup_ratio": 0.1}}  # fmt: skip
DATA = {"train_rows": 1200, "synthetic_rows": 240, "val_rows": 150, "source": "a|b.csv"}


def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "student"
    folder.mkdir()
    labels = {"0": "incorrect", "1": "partially_correct", "2": "correct"}
    (folder / "config.json").write_text(json.dumps({"id2label": labels}))
    return folder


def split_card(path: Path) -> tuple[dict, str]:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def test_card_has_front_matter_and_all_sections(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    metrics = {"test": {"qwk": 0.8123456, "macro_f1": 0.7, "accuracy": 0.75}, "rows": 300}
    path = write_model_card(folder, role="student", base_model="pypi:all-minilm-l6-v2",
                            params=PARAMS, metrics=metrics, data_summary=DATA)  # fmt: skip
    assert path == folder / "README.md"
    meta, body = split_card(path)
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["pipeline_tag"] == "text-classification"
    assert meta["labels"] == ["incorrect", "partially_correct", "correct"]
    assert meta["metrics"] == ["accuracy", "macro_f1", "qwk", "rows"]
    assert "student" in meta["tags"]
    for heading in ("Intended use", "Training data", "Training parameters", "Evaluation",
                    "Limitations", "How to use"):  # fmt: skip
        assert f"## {heading}\n" in body
    assert "| `test.qwk` | 0.8123 |" in body  # nested metrics flattened, rounded
    assert "| `schedule.epochs` | 4 |" in body and "| `learning_rate` | 3e-05 |" in body
    assert "| `source` | a\\|b.csv |" in body  # a pipe cannot break the table
    assert "`incorrect`, `partially_correct`, `correct`" in body
    assert 'Scorer.load("student")' in body
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json"]


def test_card_without_metrics_or_hub_base(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    local_base = tmp_path / "my-encoder"
    local_base.mkdir()
    write_model_card(folder, role="teacher", base_model=str(local_base), params={},
                     metrics=None, data_summary={})  # fmt: skip
    meta, body = split_card(folder / "README.md")
    assert "base_model" not in meta and "metrics" not in meta  # a local path is no hub id
    assert "Not evaluated yet" in body
    assert "fine-tuned on human + synthetic" in body


def test_card_is_rewritten_in_place(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    common = {"role": "student", "base_model": "x/y", "params": {}, "data_summary": {}}
    write_model_card(folder, metrics=None, **common)
    write_model_card(folder, metrics={"qwk": 0.5}, **common)
    meta, body = split_card(folder / "README.md")
    assert meta["base_model"] == "x/y" and "| `qwk` | 0.5 |" in body
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json"]


def test_card_is_the_same_whatever_the_machine_speed(tmp_path: Path) -> None:
    """Same weights, same card bytes (so the same DVC hash); speed goes to the metrics only."""
    folder = model_folder(tmp_path)
    cards, metrics = [], []
    for speed, memory in [(6.25, 2892.4), (2.73, 2905.1)]:
        stats = {"train_samples_per_second": speed, "peak_memory_mb": memory,
                 "truncated_fraction": 0.1, "num_processes": 1}  # fmt: skip
        result = TrainResult(best_epoch=3, best_val={"qwk": 0.51}, stats=stats)
        record_training(result, metrics_path=tmp_path / "metrics.json", model_dir=folder,
                        role="teacher", base_model="x/y", params=PARAMS, data_summary=DATA,
                        validation_rows=106)  # fmt: skip
        cards.append((folder / "README.md").read_bytes())
        metrics.append(json.loads((tmp_path / "metrics.json").read_text()))
    assert cards[0] == cards[1]
    assert b"truncated_fraction" in cards[0] and b"samples_per_second" not in cards[0]
    assert [m["train_samples_per_second"] for m in metrics] == [6.25, 2.73]
