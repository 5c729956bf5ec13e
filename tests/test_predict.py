"""Scoring with a saved model: the Python API, CSV streaming, bad input, the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scorer_helpers import LABELS, save_tiny_classifier

from hybridscore import predict
from hybridscore.errors import HybridscoreError
from hybridscore.export import INT8_FILE, export_model
from hybridscore.predict import Scorer, score_csv

PROB_COLUMNS = [f"prob_{label}" for label in LABELS]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(PyTorch folder, ONNX folder) of one tiny MPNet classifier."""
    root = tmp_path_factory.mktemp("predict")
    model_dir = save_tiny_classifier(root / "model", "mpnet")
    export_model(model_dir, root / "onnx")
    return model_dir, root / "onnx"


@pytest.fixture(scope="module")
def scorer(models) -> Scorer:
    return Scorer.load(models[0], batch_size=4)


def responses(n: int) -> list[str]:
    words = ["light", "energy", "sugar", "leaf", "water", "heat", "mass", "circuit"]
    return [" ".join(words[: 1 + i % len(words)]) + f" answer {i}" for i in range(n)]


def test_python_api_in_three_lines(models) -> None:
    scorer = Scorer.load(models[0])
    scored = scorer.predict(["Plants use light to make sugar.", "no idea"])
    assert list(scored.columns) == ["predicted_label", *PROB_COLUMNS]
    assert set(scored["predicted_label"]) <= set(LABELS)
    np.testing.assert_allclose(scored[PROB_COLUMNS].sum(axis=1), 1.0, rtol=1e-5)
    probs = scored[PROB_COLUMNS].to_numpy()
    assert [LABELS[i] for i in probs.argmax(axis=1)] == scored["predicted_label"].tolist()


def test_onnx_folder_is_detected_and_matches_pytorch(models, scorer: Scorer) -> None:
    model_dir, onnx_dir = models
    texts = responses(9)
    default = Scorer.load(onnx_dir)
    assert default.source.endswith(INT8_FILE)  # the deployable file is the default
    fp32 = Scorer.load(onnx_dir, onnx_file="model.onnx", batch_size=4)
    np.testing.assert_allclose(fp32.predict_proba(texts), scorer.predict_proba(texts), atol=1e-5)
    assert Scorer.load(model_dir).source == str(model_dir)  # no ONNX file: PyTorch
    pytorch = Scorer.load(onnx_dir.parent / "model", prefer_onnx=False)
    assert type(pytorch.backend).__name__ == "TorchBackend"


def test_device_places_the_pytorch_model(models, scorer: Scorer) -> None:
    import torch

    auto = Scorer.load(models[0], prefer_onnx=False, device="auto")
    expected = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    assert auto.backend.device == (expected.type if expected is not None else "cpu")
    assert next(auto.backend.model.parameters()).device.type == auto.backend.device
    texts = responses(5)
    np.testing.assert_allclose(auto.logits(texts), scorer.logits(texts), atol=1e-3)
    with pytest.raises(HybridscoreError, match="device 'nonsense' is not usable"):
        Scorer.load(models[0], prefer_onnx=False, device="nonsense")
    if not torch.cuda.is_available():
        with pytest.raises(HybridscoreError, match="device 'cuda' is not usable"):
            Scorer.load(models[0], prefer_onnx=False, device="cuda")


def test_batching_does_not_change_results(scorer: Scorer) -> None:
    texts = responses(11)
    one_by_one = np.vstack([scorer.logits([t]) for t in texts])
    np.testing.assert_allclose(scorer.logits(texts), one_by_one, atol=1e-5)


def test_score_csv_streams_and_keeps_every_input_column(tmp_path: Path, scorer: Scorer) -> None:
    texts = responses(10)
    texts[3] = 'she said "light", then\na new line'
    source = pd.DataFrame({"id": [f"{i:03d}" for i in range(10)], "answer": texts, "note": ""})
    source.to_csv(tmp_path / "in.csv", index=False, encoding="utf-8-sig")  # with a BOM
    out = tmp_path / "scored.csv"

    rows = score_csv(scorer, tmp_path / "in.csv", out, text_column="answer", chunk_rows=3)

    scored = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert rows == 10
    assert list(scored.columns) == ["id", "answer", "note", "predicted_label", *PROB_COLUMNS]
    pd.testing.assert_frame_equal(scored[["id", "answer", "note"]], source)  # "007" stays
    expected = scorer.predict([t.strip() for t in texts])
    assert scored["predicted_label"].tolist() == expected["predicted_label"].tolist()
    probs = scored[PROB_COLUMNS].astype(float)
    np.testing.assert_allclose(probs, expected[PROB_COLUMNS], atol=1e-6)


@pytest.mark.parametrize(
    ("content", "kwargs", "message"),
    [
        (None, {}, "input file not found"),
        (b"", {}, "the file is empty"),
        (b"id,text\n", {}, "no data rows"),
        (b"id,answer\n1,light\n", {}, "missing column 'text' (--text-column); found: id, answer"),
        (b"id,text\n1,a\n2,b\n3,c\n4, \n", {"chunk_rows": 2}, "row 5, column 'text': empty text"),
        (b"id,text\n1,light\n2,caf\xe9\n", {}, "line 3: not valid utf-8 text"),
        (b"text,prob_mid\nlight,1\n", {}, "already has output column(s) ['prob_mid']"),
    ],
    ids=["missing", "empty-file", "header-only", "no-column", "empty-text", "encoding", "clash"],
)  # fmt: skip
def test_bad_csv_raises_one_clear_error_and_writes_nothing(
    tmp_path: Path, scorer: Scorer, content: bytes | None, kwargs: dict, message: str
) -> None:
    source = tmp_path / "in.csv"
    if content is not None:
        source.write_bytes(content)
    out = tmp_path / "scored.csv"
    with pytest.raises(HybridscoreError) as error:
        score_csv(scorer, source, out, progress=False, **kwargs)
    assert message in str(error.value) and str(source) in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["in.csv"] if content is not None else [])


def test_unknown_encoding_name(tmp_path: Path, scorer: Scorer) -> None:
    (tmp_path / "in.csv").write_text("text\nlight\n")
    with pytest.raises(HybridscoreError, match="--encoding: unknown encoding 'klingon'"):
        score_csv(scorer, tmp_path / "in.csv", tmp_path / "out.csv", encoding="klingon")
    assert not (tmp_path / "out.csv").exists()


def test_latin1_input_with_encoding_option(tmp_path: Path, scorer: Scorer) -> None:
    (tmp_path / "in.csv").write_bytes("text\ncafé au lait\n".encode("latin-1"))
    score_csv(scorer, tmp_path / "in.csv", tmp_path / "out.csv", encoding="latin-1", progress=False)
    assert pd.read_csv(tmp_path / "out.csv")["text"].tolist() == ["café au lait"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "nowhere", "model folder not found"),
        (lambda d: d, "not a model folder (no config.json"),
        (lambda d: (d / "config.json").write_text('{"id2label": {"0": "a"}}') and d, "id2label"),
    ],
    ids=["missing", "no-config", "bad-labels"],
)
def test_not_a_model_folder(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(HybridscoreError, match=message.replace("(", r"\(")):
        Scorer.load(make(tmp_path))


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"max_length": 1}, "max length must be at least 2, got 1"),
        ({"batch_size": 0}, "batch size must be at least 1, got 0"),
        ({"threads": 0}, r"threads must be at least 1 \(none = all cores\), got 0"),
        ({"threads": -2}, "threads must be at least 1 .*got -2"),
    ],
    ids=["max-length", "batch-size", "zero-threads", "negative-threads"],
)
def test_bad_load_options_are_named(models, option: dict, message: str) -> None:
    with pytest.raises(HybridscoreError, match=message):
        Scorer.load(models[1], **option)


def test_named_onnx_file_must_exist(models) -> None:
    with pytest.raises(HybridscoreError, match=r"nope\.onnx: ONNX file not found"):
        Scorer.load(models[1], onnx_file="nope.onnx")


def test_predict_rejects_empty_texts(scorer: Scorer) -> None:
    with pytest.raises(HybridscoreError, match="text 1: empty"):
        scorer.predict(["light", "   "])


def test_cli_main_scores_a_csv(tmp_path: Path, models, capsys: pytest.CaptureFixture[str]) -> None:
    pd.DataFrame({"text": responses(5)}).to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "scored.csv"
    predict.main(["--model", str(models[1]), str(tmp_path / "in.csv"), "-o", str(out),
                  "--batch-size", "2", "--max-length", "16"])  # fmt: skip
    assert len(pd.read_csv(out)) == 5
    assert f"scored 5 rows with {models[1] / INT8_FILE}" in capsys.readouterr().err


def test_real_cli_bad_csv_exits_2_without_output(tmp_path: Path, models) -> None:
    (tmp_path / "in.csv").write_text("id,text\n1,light energy\n2,\n3,heat\n", encoding="utf-8")
    out = tmp_path / "scored.csv"
    command = [sys.executable, "-m", "hybridscore.cli", "predict", "--model", str(models[1]),
               str(tmp_path / "in.csv"), "-o", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    expected = f"predict: error: {tmp_path / 'in.csv'}: row 3, column 'text': empty text"
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]
