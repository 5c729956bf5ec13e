"""Score responses with a saved model (PyTorch or ONNX folder): from Python or as a CLI.

Python::

    from hybridscore.predict import Scorer
    scorer = Scorer.load("models/student")
    scorer.predict(["Plants make sugar from light.", "I don't know"])  # DataFrame

CLI::

    hybridscore predict --model models/student input.csv -o scored.csv
"""

from __future__ import annotations

import argparse
import codecs
import inspect
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from hybridscore.data import atomic_path
from hybridscore.errors import HybridscoreError, run_stage

ONNX_FILES = ("model.int8.onnx", "model.onnx")  # auto-detection order: the deployable one first
DEFAULT_MAX_LENGTH = 128
DEFAULT_BATCH_SIZE = 64
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
PREDICTED_COLUMN = "predicted_label"
PROB_PREFIX = "prob_"


class Backend(Protocol):
    """Turns tokenised batches (numpy int64 arrays by input name) into logits."""

    input_names: tuple[str, ...]

    def logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray: ...


class TorchBackend:
    """A ``save_pretrained`` classifier run eagerly with PyTorch (on ``device``, default CPU)."""

    def __init__(self, model, device: str = "cpu", threads: int | None = None) -> None:
        from hybridscore.training import pin_cpu_threads

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


def resolve_device(device: str) -> str:
    """``auto``: the machine's GPU (or other accelerator) if it has one, else ``cpu``."""
    import torch

    if device == "auto":
        from hybridscore.training import default_device_type

        return default_device_type()
    try:
        torch.empty(0, device=device)
    except (RuntimeError, ValueError, AssertionError) as exc:  # no CUDA build: AssertionError
        raise HybridscoreError(f"device {device!r} is not usable here: {exc}") from None
    return device


class OnnxBackend:
    """An exported ``model.onnx`` / ``model.int8.onnx`` run with onnxruntime on the CPU."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        from hybridscore.quantize import cpu_session

        try:
            self.session = cpu_session(path, threads)
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


def find_onnx_file(model_dir: Path, onnx_file: str | None = None) -> Path | None:
    """The ONNX file to use in ``model_dir``: the one named, else INT8, else fp32, else None."""
    if onnx_file is not None:
        path = model_dir / onnx_file
        if not path.is_file():
            raise HybridscoreError(f"{path}: ONNX file not found (--onnx-file)")
        return path
    return next((model_dir / n for n in ONNX_FILES if (model_dir / n).is_file()), None)


def check_threads(threads: int | None) -> None:
    """``threads`` is none (all cores) or at least 1: one meaning for every CPU runtime here."""
    if threads is not None and threads < 1:
        raise HybridscoreError(f"threads must be at least 1 (none = all cores), got {threads}")


@dataclass
class Scorer:
    """A tokenizer + backend + ordered labels: texts in, labels and probabilities out."""

    tokenizer: object
    backend: Backend
    labels: list[str]
    max_length: int = DEFAULT_MAX_LENGTH
    batch_size: int = DEFAULT_BATCH_SIZE
    source: str = ""

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
        if not (model_dir / "config.json").is_file():
            raise HybridscoreError(
                f"{model_dir}: not a model folder (no config.json; expected a folder written "
                "by the distill/train_teacher/export stages)"
            )
        for name, value, least in (("max length", max_length, 2), ("batch size", batch_size, 1)):
            if value < least:
                raise HybridscoreError(f"{name} must be at least {least}, got {value}")
        check_threads(threads)
        labels = read_labels_from_config(model_dir)
        onnx_path = find_onnx_file(model_dir, onnx_file) if prefer_onnx or onnx_file else None
        try:
            tokenizer = AutoTokenizer.from_pretrained(model_dir)
            if onnx_path is not None:
                backend: Backend = OnnxBackend(onnx_path, threads)
            else:
                from transformers import AutoModelForSequenceClassification

                backend = TorchBackend(
                    AutoModelForSequenceClassification.from_pretrained(model_dir), device, threads
                )
        except (OSError, ValueError) as exc:
            raise HybridscoreError(f"{model_dir}: cannot load model or tokenizer: {exc}") from None
        return cls(tokenizer, backend, labels, max_length, batch_size, str(onnx_path or model_dir))

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Tokenise one batch into int64 arrays for every input the backend takes."""
        return encode_batch(self.tokenizer, texts, self.max_length)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logits (n_texts x n_labels); batches are length-sorted to cut padding."""
        texts = _check_texts(texts)
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self.backend.logits(self.encode([texts[i] for i in idx]))
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Softmax probabilities (n_texts x n_labels), columns in ``self.labels`` order."""
        return softmax(self.logits(texts))

    def predict(self, texts: Sequence[str]) -> pd.DataFrame:
        """One row per text: ``predicted_label`` and ``prob_<label>`` for each label."""
        return self.frame(self.predict_proba(texts))

    def frame(self, probs: np.ndarray) -> pd.DataFrame:
        """The output columns for a probability matrix."""
        frame = pd.DataFrame({PREDICTED_COLUMN: [self.labels[i] for i in probs.argmax(axis=1)]})
        for j, label in enumerate(self.labels):
            frame[f"{PROB_PREFIX}{label}"] = probs[:, j]
        return frame


def encode_batch(tokenizer, texts: Sequence[str], max_length: int) -> dict[str, np.ndarray]:
    """One padded batch as int64 arrays by model input name (``token_type_ids`` always)."""
    limit = getattr(tokenizer, "model_max_length", None) or max_length
    encoded = tokenizer(
        list(texts),
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


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise HybridscoreError(f"text {i}: empty or not a string ({text!r})")
    return texts


# --------------------------------------------------------------------------- CSV scoring
def _reading_encoding(encoding: str) -> str:
    """Read UTF-8 as ``utf-8-sig`` so a spreadsheet's byte-order mark does not rename column 1."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise HybridscoreError(f"--encoding: unknown encoding {encoding!r}") from None
    return "utf-8-sig" if name == "utf-8" else encoding


def check_encoding(path: Path, encoding: str, shown_as: str | None = None) -> int:
    """Decode the whole file in blocks (streaming); return its line count.

    A byte that does not decode raises one error naming the line, before any scoring.
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    lines, offset = 0, 0
    with path.open("rb") as handle:
        while True:
            block = handle.read(1 << 20)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                line = lines + block[: max(exc.start, 0)].count(b"\n") + 1
                raise HybridscoreError(
                    f"{path}: line {line}: not valid {shown_as or encoding} text "
                    f"(byte {offset + exc.start}); re-save the file as UTF-8 or pass --encoding"
                ) from None
            if not block:
                return lines
            lines += block.count(b"\n")
            offset += len(block)


def _read_csv(path: Path, encoding: str, **options) -> Iterator[pd.DataFrame]:
    """``pd.read_csv`` (all columns as text) with its errors turned into one clear message."""
    try:
        result = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding, **options)
        yield from [result] if isinstance(result, pd.DataFrame) else result
    except pd.errors.EmptyDataError:
        raise HybridscoreError(f"{path}: the file is empty") from None
    except pd.errors.ParserError as exc:
        raise HybridscoreError(f"{path}: not a valid CSV: {exc}") from None


def score_csv(
    scorer: Scorer,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    text_column: str = "text",
    encoding: str = "utf-8",
    chunk_rows: int = 4096,
    progress: bool = True,
) -> int:
    """Score every row of a CSV into ``output_path`` (atomically); return the row count.

    The output keeps all input columns and adds ``predicted_label`` and ``prob_<label>``; the
    input is read in blocks of ``chunk_rows``. Row numbers in errors count the header as row 1
    (as a spreadsheet shows them). On any error no output file is left behind.
    """
    from tqdm import tqdm

    input_path = Path(input_path)
    if not input_path.is_file():
        raise HybridscoreError(f"{input_path}: input file not found")
    read_as = _reading_encoding(encoding)
    lines = check_encoding(input_path, read_as, shown_as=encoding)
    header = next(_read_csv(input_path, read_as, nrows=0))
    _check_columns(input_path, header, text_column, scorer.labels)
    rows = 0
    with (
        atomic_path(output_path) as tmp,
        tqdm(total=max(lines - 1, 1), unit="row", disable=not progress, file=sys.stderr) as bar,
    ):
        for chunk in _read_csv(input_path, read_as, chunksize=chunk_rows):
            texts = chunk[text_column].str.strip()
            empty = np.flatnonzero((texts == "").to_numpy())
            if len(empty):
                raise HybridscoreError(
                    f"{input_path}: row {rows + empty[0] + 2}, column {text_column!r}: empty text"
                )
            result = scorer.predict(texts.tolist())
            result.index = chunk.index
            pd.concat([chunk, result], axis=1).to_csv(
                tmp, mode="a" if rows else "w", header=rows == 0, index=False, encoding="utf-8"
            )
            rows += len(chunk)
            bar.total = max(bar.total, rows)  # quoted multi-line fields make lines != rows
            bar.update(len(chunk))
        if rows == 0:
            raise HybridscoreError(f"{input_path}: no data rows (only a header)")
    return rows


def _check_columns(path: Path, header: pd.DataFrame, text_column: str, labels: list[str]) -> None:
    if text_column not in header.columns:
        raise HybridscoreError(
            f"{path}: missing column {text_column!r} (--text-column); "
            f"found: {', '.join(map(str, header.columns))}"
        )
    added = [PREDICTED_COLUMN, *(f"{PROB_PREFIX}{label}" for label in labels)]
    clash = [c for c in added if c in header.columns]
    if clash:
        raise HybridscoreError(
            f"{path}: already has output column(s) {clash}; rename them or score the original file"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hybridscore predict",
        description="Score a CSV of responses with a saved model (PyTorch or ONNX folder).",
    )
    parser.add_argument("input", help="CSV file with one response per row")
    parser.add_argument("-o", "--output", required=True, help="where to write the scored CSV")
    parser.add_argument(
        "--model", default="models/student", help="model folder (default: %(default)s)"
    )
    parser.add_argument("--text-column", default="text", help="column holding the responses")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--max-length", type=int, default=DEFAULT_MAX_LENGTH, help="tokens per text"
    )
    parser.add_argument(
        "--onnx-file",
        default=None,
        help="ONNX file in the model folder (default: model.int8.onnx, then model.onnx)",
    )
    parser.add_argument("--pytorch", action="store_true", help="ignore ONNX files, run PyTorch")
    parser.add_argument(
        "--device", default="cpu", help="PyTorch models: cpu, cuda, or auto (a GPU if present)"
    )
    parser.add_argument("--encoding", default="utf-8", help="input file encoding")
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads, at least 1 (default: all cores)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    def run() -> None:
        scorer = Scorer.load(
            args.model,
            onnx_file=args.onnx_file,
            prefer_onnx=not args.pytorch,
            max_length=args.max_length,
            batch_size=args.batch_size,
            threads=args.threads,
            device=args.device,
        )
        rows = score_csv(
            scorer,
            args.input,
            args.output,
            text_column=args.text_column,
            encoding=args.encoding,
            progress=not args.no_progress,
        )
        print(f"scored {rows} rows with {scorer.source} -> {args.output}", file=sys.stderr)

    run_stage("predict", run)


if __name__ == "__main__":
    main()
