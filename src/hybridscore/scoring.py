"""Score texts with a saved model folder (PyTorch or ONNX): the ``Scorer`` and its backends.

    from hybridscore.scoring import Scorer
    scorer = Scorer.load("models/student")
    scorer.predict(["Plants make sugar from light.", "I don't know"])  # DataFrame

A model trained with a pair ``data.input`` (its folder records it) also takes the first
segment of each pair: ``scorer.predict(texts, questions)`` (``scorer.pair_column`` says which).
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from hybridscore import runtime
from hybridscore.data import INPUT_RECORD, PAIR_COLUMNS, InputMode, tokenize
from hybridscore.errors import HybridscoreError
from hybridscore.runtime import check_threads, pin_cpu_threads, resolve_device

ONNX_FP32_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"
ONNX_FILES = (ONNX_INT8_FILE, ONNX_FP32_FILE)  # auto-detection order: the deployable one first
PYTORCH_WEIGHTS = ("*.safetensors", "pytorch_model*.bin")  # save_pretrained, sharded or not
TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_VOCABULARIES = (  # one of them holds the vocabulary (fast or slow tokenizer)
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
DEFAULT_MAX_LENGTH = 128
DEFAULT_BATCH_SIZE = 64
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PREDICTED_COLUMN = "predicted_label"
PROB_PREFIX = "prob_"


class ScoringBackend(Protocol):
    """Turns tokenised batches (numpy int64 arrays by input name) into logits."""

    input_names: tuple[str, ...]

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...


class TorchBackend:
    """A ``save_pretrained`` classifier run eagerly with PyTorch (on ``device``, default CPU)."""

    def __init__(self, model, device: str = "cpu", threads: int | None = None) -> None:
        pin_cpu_threads(threads)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        accepted = inspect.signature(model.forward).parameters
        self.input_names = tuple(name for name in MODEL_INPUTS if name in accepted)

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            tensors = {
                name: torch.from_numpy(inputs[name]).to(self.device) for name in self.input_names
            }
            return self.model(**tensors).logits.float().cpu().numpy()


class OnnxBackend:
    """An exported ``model.onnx`` / ``model.int8.onnx`` run with onnxruntime on the CPU."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        try:
            self.session = runtime.cpu_session(path, threads)  # looked up here: tests count them
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise HybridscoreError(f"{path}: cannot load ONNX model: {exc}") from None
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        unknown = set(self.input_names) - set(MODEL_INPUTS)
        if unknown:
            raise HybridscoreError(f"{path}: unexpected ONNX input(s) {sorted(unknown)}")

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(["logits"], {n: inputs[n] for n in self.input_names})[0]


def read_labels_from_config(model_dir: Path) -> list[str]:
    """The ordered label names of a saved classifier (``config.id2label``)."""
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        id2label = {int(k): str(v) for k, v in config["id2label"].items()}
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise HybridscoreError(f"{model_dir}/config.json: no readable id2label ({exc})") from None
    if sorted(id2label) != list(range(len(id2label))) or len(id2label) < 2:
        raise HybridscoreError(f"{model_dir}/config.json: id2label must number labels 0..N-1")
    return [id2label[i] for i in range(len(id2label))]


def read_input_mode(model_dir: str | os.PathLike[str]) -> InputMode:
    """What a saved classifier reads (``data.input``), from its ``config.json``.

    A folder without the record (a ``text`` model, or one saved before ``data.input``
    existed) reads the response alone; an unknown value is one message naming the file.
    """
    path = Path(model_dir) / "config.json"
    try:
        mode = json.loads(path.read_text(encoding="utf-8")).get(INPUT_RECORD, "text")
    except (OSError, ValueError, AttributeError) as exc:
        raise HybridscoreError(f"{path}: not readable ({exc})") from None
    if mode != "text" and mode not in PAIR_COLUMNS:
        raise HybridscoreError(
            f"{path}: {INPUT_RECORD} must be one of text, {', '.join(PAIR_COLUMNS)} (got {mode!r})"
        )
    return mode


def check_model_folder(
    model_dir: str | os.PathLike[str], onnx_path: Path | None = None, *, onnx_ok: bool = False
) -> list[str]:
    """Refuse an incomplete model folder with one message naming all that is missing.

    Complete = ``config.json`` with labels (``id2label``), weights (the ONNX file
    ``onnx_path``, else PyTorch ``*.safetensors`` / ``pytorch_model.bin``; ``onnx_ok``: the
    message offers an ONNX file too) and tokenizer files (``tokenizer_config.json`` and a
    vocabulary: without them transformers builds a tokenizer that knows no word, so every
    text would score as ``[UNK]``). Returns the ordered labels.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise HybridscoreError(f"{model_dir}: model folder not found")

    def has(*patterns: str) -> bool:
        return any(next(model_dir.glob(pattern), None) for pattern in patterns)

    missing: list[str] = []
    labels: list[str] = []
    if not has("config.json"):
        missing.append("config.json")
    else:
        try:
            labels = read_labels_from_config(model_dir)
        except HybridscoreError as exc:
            missing.append(f"labels ({str(exc).removeprefix(f'{model_dir}/')})")
    if onnx_path is None and not has(*PYTORCH_WEIGHTS):
        onnx = f", or an ONNX file {' / '.join(ONNX_FILES)}" if onnx_ok else ""
        missing.append(f"weights (model.safetensors or pytorch_model.bin{onnx})")
    tokenizer = [] if has(TOKENIZER_CONFIG) else [TOKENIZER_CONFIG]
    if not has(*TOKENIZER_VOCABULARIES):
        tokenizer.append(f"a vocabulary: {' / '.join(TOKENIZER_VOCABULARIES)}")
    if tokenizer:
        missing.append(f"tokenizer files ({', '.join(tokenizer)})")
    if missing:
        kind = "not a model folder" if not has("config.json") else "incomplete model folder"
        raise HybridscoreError(
            f"{model_dir}: {kind} (no {'; no '.join(missing)}; expected a folder written by "
            "the distill/train_teacher/export stages)"
        )
    return labels


def model_load_errors() -> tuple[type[Exception], ...]:
    """What loading a damaged model folder raises (a truncated or garbled weights file)."""
    import pickle

    from safetensors import SafetensorError

    return (OSError, ValueError, SafetensorError, pickle.UnpicklingError)


def find_onnx_file(model_dir: Path, onnx_file: str | None = None) -> Path | None:
    """The ONNX file to use in ``model_dir``: the one named, else INT8, else fp32, else None."""
    if onnx_file is not None:
        path = model_dir / onnx_file
        if not path.is_file():
            raise HybridscoreError(f"{path}: ONNX file not found (--onnx-file)")
        return path
    return next((model_dir / n for n in ONNX_FILES if (model_dir / n).is_file()), None)


@dataclass
class Scorer:
    """A tokenizer + backend + ordered labels: texts in, labels and probabilities out."""

    tokenizer: object
    backend: ScoringBackend
    labels: list[str]
    max_length: int = DEFAULT_MAX_LENGTH
    batch_size: int = DEFAULT_BATCH_SIZE
    source: str = ""
    input_mode: InputMode = "text"

    @property
    def pair_column(self) -> str | None:
        """The table column of each pair's first segment (``question``/``reference``), or None."""
        return PAIR_COLUMNS.get(self.input_mode)

    @classmethod
    def load(
        cls,
        model_dir: str | os.PathLike[str],
        *,
        onnx_file: str | None = None,
        prefer_onnx: bool = True,
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = DEFAULT_BATCH_SIZE,
        threads: int | None = None,
        device: str = "cpu",
    ) -> Scorer:
        """Load a model folder: ONNX if it holds one (or ``onnx_file``), else PyTorch.

        ``device`` places a PyTorch model (``cpu``, ``cuda``, ``auto`` = a GPU if there is
        one); ONNX files always run on the CPU. ``threads`` fixes the CPU threads of either
        runtime (for PyTorch process-wide, as ``torch.set_num_threads``); none = all cores.
        """
        from transformers import AutoTokenizer

        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise HybridscoreError(f"{model_dir}: model folder not found")
        for name, value, least in (("max length", max_length, 2), ("batch size", batch_size, 1)):
            if value < least:
                raise HybridscoreError(f"{name} must be at least {least}, got {value}")
        check_threads(threads)
        use_onnx = bool(prefer_onnx or onnx_file)
        onnx_path = find_onnx_file(model_dir, onnx_file) if use_onnx else None
        labels = check_model_folder(model_dir, onnx_path, onnx_ok=use_onnx)
        input_mode = read_input_mode(model_dir)
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_dir)
            if onnx_path is not None:
                backend: ScoringBackend = OnnxBackend(onnx_path, threads)
            else:
                from transformers import AutoModelForSequenceClassification

                backend = TorchBackend(
                    AutoModelForSequenceClassification.from_pretrained(model_dir), device, threads
                )
        except model_load_errors() as exc:
            raise HybridscoreError(f"{model_dir}: cannot load model or tokenizer: {exc}") from None
        source = str(onnx_path or model_dir)
        return cls(tokenizer, backend, labels, max_length, batch_size, source, input_mode)

    def encode(
        self, texts: Sequence[str], firsts: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Tokenise one batch into int64 arrays for every input the backend takes."""
        return encode_batch(self.tokenizer, texts, self.max_length, firsts)

    def logits(self, texts: Sequence[str], firsts: Sequence[str] | None = None) -> np.ndarray:
        """Raw logits (n_texts x n_labels); batches are length-sorted to cut padding.

        ``firsts``: each text's question or reference answer (``pair_column``), which a
        model trained with a pair ``data.input`` needs and a ``text`` model refuses.
        """
        texts = _check_texts(texts)
        firsts = self._check_firsts(firsts, len(texts))
        out = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        for rows, batch, batch_firsts in length_batches(texts, firsts, self.batch_size):
            out[rows] = self.backend.logits(self.encode(batch, batch_firsts))
        return out

    def predict_proba(
        self, texts: Sequence[str], firsts: Sequence[str] | None = None
    ) -> np.ndarray:
        """Softmax probabilities (n_texts x n_labels), columns in ``self.labels`` order."""
        return softmax(self.logits(texts, firsts))

    def predict(self, texts: Sequence[str], firsts: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per text: ``predicted_label`` and ``prob_<label>`` for each label."""
        return self.frame(self.predict_proba(texts, firsts))

    def _check_firsts(self, firsts: Sequence[str] | None, count: int) -> list[str] | None:
        """``firsts`` as this model needs them: none for ``text``, one per text for pairs."""
        column = self.pair_column
        if column is None:
            if firsts is not None:
                raise HybridscoreError(
                    f"{self.source}: this model reads the response alone (data.input: text); "
                    "it takes no first segments"
                )
            return None
        if firsts is None:
            raise HybridscoreError(
                f"{self.source}: this model reads ({column}, response) pairs (data.input: "
                f"{self.input_mode}); give the {column} of every response"
            )
        firsts = _check_texts(firsts, what=column)
        if len(firsts) != count:
            raise HybridscoreError(f"{len(firsts)} {column} value(s) for {count} text(s)")
        return firsts

    def frame(self, probs: np.ndarray) -> pd.DataFrame:
        """The output columns for a probability matrix."""
        frame = pd.DataFrame({PREDICTED_COLUMN: [self.labels[i] for i in probs.argmax(axis=1)]})
        for j, label in enumerate(self.labels):
            frame[f"{PROB_PREFIX}{label}"] = probs[:, j]
        return frame


def length_batches(
    texts: Sequence[str], firsts: Sequence[str] | None, size: int
) -> Iterator[tuple[list[int], list[str], list[str] | None]]:
    """``(rows, texts, firsts)`` batches of ``size``, shortest pair first (a stable sort by
    characters, first segment included), so that each batch pads little."""
    lengths = [len(text) for text in texts]
    if firsts is not None:
        lengths = [n + len(first) for n, first in zip(lengths, firsts, strict=True)]
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    for start in range(0, len(order), size):
        rows = order[start : start + size]
        batch_firsts = None if firsts is None else [firsts[i] for i in rows]
        yield rows, [texts[i] for i in rows], batch_firsts


def encode_batch(
    tokenizer, texts: Sequence[str], max_length: int, firsts: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """One padded batch as int64 arrays by model input name (``token_type_ids`` always);
    with ``firsts``, of ``(first, text)`` pairs truncated as ``data.tokenize`` says."""
    limit = getattr(tokenizer, "model_max_length", None) or max_length
    encoded = tokenize(
        tokenizer,
        texts,
        firsts,
        padding=True,
        truncation=True,
        max_length=min(max_length, limit),
        return_tensors="np",
    )
    arrays = {name: np.asarray(encoded[name], dtype=np.int64) for name in encoded}
    if "token_type_ids" not in arrays:
        arrays["token_type_ids"] = np.zeros_like(arrays["input_ids"])
    return arrays


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _check_texts(texts: Sequence[str], what: str = "text") -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{what}s must be a list of strings, not one string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise HybridscoreError(f"{what} {i}: empty or not a string ({text!r})")
    return texts
