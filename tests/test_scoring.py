"""The Scorer: loading a model folder (PyTorch or ONNX), refusing incomplete ones, scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scorer_helpers import LABELS, copy_without_tokenizer, responses

from hybridscore.errors import HybridscoreError
from hybridscore.scoring import ONNX_INT8_FILE, Scorer, check_model_folder

PROB_COLUMNS = [f"prob_{label}" for label in LABELS]


@pytest.fixture(scope="module")
def scorer(tiny_models) -> Scorer:
    return Scorer.load(tiny_models[0], batch_size=4)


def test_python_api_in_three_lines(tiny_models) -> None:
    scorer = Scorer.load(tiny_models[0])
    scored = scorer.predict(["Plants use light to make sugar.", "no idea"])
    assert list(scored.columns) == ["predicted_label", *PROB_COLUMNS]
    assert set(scored["predicted_label"]) <= set(LABELS)
    np.testing.assert_allclose(scored[PROB_COLUMNS].sum(axis=1), 1.0, rtol=1e-5)
    probs = scored[PROB_COLUMNS].to_numpy()
    assert [LABELS[i] for i in probs.argmax(axis=1)] == scored["predicted_label"].tolist()


def test_onnx_folder_is_detected_and_matches_pytorch(tiny_models, scorer: Scorer) -> None:
    model_dir, onnx_dir = tiny_models
    texts = responses(9)
    default = Scorer.load(onnx_dir)
    assert default.source.endswith(ONNX_INT8_FILE)  # the deployable file is the default
    fp32 = Scorer.load(onnx_dir, onnx_file="model.onnx", batch_size=4)
    np.testing.assert_allclose(fp32.predict_proba(texts), scorer.predict_proba(texts), atol=1e-5)
    assert Scorer.load(model_dir).source == str(model_dir)  # no ONNX file: PyTorch
    pytorch = Scorer.load(onnx_dir.parent / "model", prefer_onnx=False)
    assert type(pytorch.backend).__name__ == "TorchBackend"


def test_device_places_the_pytorch_model(tiny_models, scorer: Scorer) -> None:
    import torch

    auto = Scorer.load(tiny_models[0], prefer_onnx=False, device="auto")
    expected = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    assert auto.backend.device == (expected.type if expected is not None else "cpu")
    assert next(auto.backend.model.parameters()).device.type == auto.backend.device
    texts = responses(5)
    np.testing.assert_allclose(auto.logits(texts), scorer.logits(texts), atol=1e-3)
    with pytest.raises(HybridscoreError, match="device 'nonsense' is not usable"):
        Scorer.load(tiny_models[0], prefer_onnx=False, device="nonsense")
    if not torch.cuda.is_available():
        with pytest.raises(HybridscoreError, match="device 'cuda' is not usable"):
            Scorer.load(tiny_models[0], prefer_onnx=False, device="cuda")


def test_batching_does_not_change_results(scorer: Scorer) -> None:
    texts = responses(11)
    one_by_one = np.vstack([scorer.logits([t]) for t in texts])
    np.testing.assert_allclose(scorer.logits(texts), one_by_one, atol=1e-5)


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


@pytest.mark.parametrize("kind", ["pytorch", "onnx"])
def test_folder_without_tokenizer_files_is_refused(tiny_models, tmp_path: Path, kind: str) -> None:
    """Without them transformers builds a tokenizer that knows no word (every word [UNK]):
    such a folder is refused, never scored."""
    pytorch, onnx = tiny_models
    folder = copy_without_tokenizer(pytorch if kind == "pytorch" else onnx, tmp_path / kind)
    with pytest.raises(HybridscoreError) as error:
        Scorer.load(folder)
    message = str(error.value)
    assert message.startswith(f"{folder}: incomplete model folder (no tokenizer files (")
    assert "tokenizer_config.json, a vocabulary: tokenizer.json / vocab.txt" in message
    assert "weights" not in message and "labels" not in message  # only what is missing


def test_one_message_names_everything_missing(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"id2label": {"0": "a"}}')
    with pytest.raises(HybridscoreError) as error:
        Scorer.load(tmp_path)
    message = str(error.value)
    assert message.startswith(f"{tmp_path}: incomplete model folder (no labels (config.json: ")
    assert "; no weights (model.safetensors or pytorch_model.bin, or an ONNX file " in message
    assert "; no tokenizer files (tokenizer_config.json, a vocabulary: " in message


def test_pytorch_load_of_an_onnx_folder_names_the_pytorch_weights(tiny_models) -> None:
    with pytest.raises(HybridscoreError) as error:
        Scorer.load(tiny_models[1], prefer_onnx=False)
    assert "incomplete model folder (no weights (model.safetensors or pytorch_model.bin);" in str(
        error.value
    )


def test_complete_folders_pass_the_check_with_their_labels(tiny_models) -> None:
    model_dir, onnx_dir = tiny_models
    assert check_model_folder(model_dir) == LABELS
    assert check_model_folder(onnx_dir, onnx_dir / ONNX_INT8_FILE) == LABELS


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
def test_bad_load_options_are_named(tiny_models, option: dict, message: str) -> None:
    with pytest.raises(HybridscoreError, match=message):
        Scorer.load(tiny_models[1], **option)


def test_named_onnx_file_must_exist(tiny_models) -> None:
    with pytest.raises(HybridscoreError, match=r"nope\.onnx: ONNX file not found"):
        Scorer.load(tiny_models[1], onnx_file="nope.onnx")


def test_predict_rejects_empty_texts(scorer: Scorer) -> None:
    with pytest.raises(HybridscoreError, match="text 1: empty"):
        scorer.predict(["light", "   "])
