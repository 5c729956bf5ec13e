"""The ``local`` backend: a causal LM through transformers (default: SmolLM2-135M GGUF), offline.

Requests are generated in batches; the ``n`` choices of a request are sampled from one
prefilled copy of its prompt. Sampling is seeded from the batch's request keys and the CPU
thread count is fixed, so a rerun of the same batch gives the same text.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybridscore.errors import HybridscoreError
from hybridscore.llm.types import Completion, Request, Usage
from hybridscore.modeling import ResolvedModel, cache_dir, resolve_model

if TYPE_CHECKING:
    from hybridscore.params import SynthesizeParams


@functools.lru_cache(maxsize=1)
def load_model(spec: str) -> tuple[Any, Any]:
    """(tokenizer, model) for a params model spec, loaded once per process."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    resolved = resolve_model(spec, "synthesize.model")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:  # quiet: the GGUF de-quantisation progress bars go to a buffer
        with contextlib.redirect_stderr(io.StringIO()):
            tokenizer, model = _load_resolved(resolved, AutoTokenizer, AutoModelForCausalLM)
    except OSError as exc:
        raise HybridscoreError(f"params synthesize.model: cannot load {spec!r}: {exc}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    return tokenizer, model


def _load_resolved(resolved: ResolvedModel, tokenizer_cls: Any, model_cls: Any) -> tuple[Any, Any]:
    """Load a model; a GGUF file is de-quantised once (~15 s) and kept as safetensors."""
    if resolved.gguf_file is None:
        return tokenizer_cls.from_pretrained(resolved.path), model_cls.from_pretrained(
            resolved.path
        )
    gguf = Path(resolved.path) / resolved.gguf_file
    stat = gguf.stat()
    tag = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    target = cache_dir() / "gguf-dequantised" / f"{gguf.stem}-{tag[:12]}"
    if (target / "config.json").exists():
        return tokenizer_cls.from_pretrained(target), model_cls.from_pretrained(target)
    tokenizer = tokenizer_cls.from_pretrained(resolved.path, gguf_file=resolved.gguf_file)
    model = model_cls.from_pretrained(resolved.path, gguf_file=resolved.gguf_file)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        saved = Path(tmp) / "model"
        tokenizer.save_pretrained(saved)
        model.hf_quantizer = None  # the weights are de-quantised already: plain tensors
        with contextlib.suppress(AttributeError):
            del model.config.quantization_config
        model.save_pretrained(saved)
        with contextlib.suppress(OSError):  # another process may have won the race
            os.replace(saved, target)
    return tokenizer, model


class LocalBackend:
    """Batched generation on the CPU (or a GPU when torch sees one)."""

    name = "local"
    concurrency = 1
    billed = False
    batch_priced = False
    structured_outputs = False  # small models get lenient parsing, not a JSON schema
    prefill = True  # a template's [reply] is the start of the reply the model continues
    # the 135M default model leaves labels short after its bounded top-ups: the default
    # sample run makes 44 of 48 rows (0.92), so 1.0 would fail the README's `dvc repro`
    default_min_fill = 0.75

    def __init__(
        self, model: str, *, batch_size: int, threads: int | None = 1, top_p: float = 0.95
    ) -> None:
        self.model = model
        self.threads = threads
        self.max_batch = batch_size
        self.top_p = top_p
        self._loaded: tuple[Any, Any] | None = None
        self._newline_ids: list[int] | None = None

    @classmethod
    def from_params(cls, params: SynthesizeParams, cache_dir: Path) -> LocalBackend:
        return cls(params.model, batch_size=params.batch_size, threads=params.cpu_threads)

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            self._loaded = load_model(self.model)
        return self._loaded

    def _prompt(self, tokenizer: Any, request: Request) -> str:
        """The chat as the model reads it, ending in the request's prefill (the reply's text
        is what the model writes after it)."""
        messages = request.chat_messages()
        if getattr(tokenizer, "chat_template", None):
            chat = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        else:
            chat = "\n\n".join(m["content"] for m in messages) + "\n\n"
        return chat + request.prefill

    def _stop_ids(self, tokenizer: Any) -> list[int]:
        """End of sequence, plus every token that contains a line break."""
        if self._newline_ids is None:
            vocab = tokenizer.get_vocab().values()
            self._newline_ids = [i for i in vocab if "\n" in tokenizer.decode([i])]
        return [tokenizer.eos_token_id, *self._newline_ids]

    @staticmethod
    def _shared_prefix(model: Any, encoded: Any, n: int) -> dict[str, Any]:
        """Inputs for ``n`` samples per prompt that read each prompt once, not ``n`` times.

        ``num_return_sequences`` would copy every prompt ``n`` times before the forward pass;
        on a CPU that prefill is most of the cost. Here each prompt (but its last token) is
        run once, its KV cache repeated ``n`` times, and generation continues from there.
        """
        ids, mask = encoded["input_ids"], encoded["attention_mask"]
        if n == 1 or ids.shape[1] < 2:
            return {"input_ids": ids, "attention_mask": mask, "num_return_sequences": n}
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
        prefix = model(
            input_ids=ids[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=positions[:, :-1],
            use_cache=True,
        )
        # newer transformers 5 call the KV cache `cache` (`past_key_values` is deprecated);
        # the prefill's output holds it under the name this version's generate() takes
        name = "cache" if "cache" in prefix else "past_key_values"
        cache = prefix[name]
        cache.batch_repeat_interleave(n)
        return {
            "input_ids": ids.repeat_interleave(n, 0),
            "attention_mask": mask.repeat_interleave(n, 0),
            name: cache,
        }

    def generate(self, requests: list[Request], attempt: int) -> list[Completion]:
        """Generate a batch; requests with different sampling settings run as separate batches."""
        import torch

        tokenizer, model = self._load()
        if self.threads:
            # a fixed count keeps sampling reproducible; 1 thread also avoids the
            # spin-wait collapse of OpenMP on a busy shared CPU (10x slower decoding)
            torch.set_num_threads(self.threads)
        head = requests[0]
        if any(
            (r.n, r.temperature, r.max_tokens) != (head.n, head.temperature, head.max_tokens)
            for r in requests
        ):
            return [c for r in requests for c in self.generate([r], attempt)]
        digest = hashlib.sha256("".join(r.key for r in requests).encode() + bytes([attempt % 256]))
        torch.manual_seed(int.from_bytes(digest.digest()[:8], "big") % (2**63))
        encoded = tokenizer(
            [self._prompt(tokenizer, r) for r in requests], return_tensors="pt", padding=True
        )
        encoded = encoded.to(model.device)
        sample = head.temperature > 0
        with torch.inference_mode():
            output = model.generate(
                **self._shared_prefix(model, encoded, head.n),
                max_new_tokens=head.max_tokens,
                do_sample=sample,
                temperature=head.temperature if sample else None,
                top_p=self.top_p if sample else None,
                pad_token_id=tokenizer.pad_token_id,
                # one answer per choice: only its first line is used, so stop at a line break
                eos_token_id=self._stop_ids(tokenizer) if head.count == 1 else None,
                begin_suppress_tokens=self._stop_ids(tokenizer) if head.count == 1 else None,
            )
        prompt_len = encoded["input_ids"].shape[1]
        new_tokens = output[:, prompt_len:]
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        completions = []
        for i, _ in enumerate(requests):
            rows = range(i * head.n, (i + 1) * head.n)
            generated = sum(int((new_tokens[j] != tokenizer.pad_token_id).sum()) for j in rows)
            prompt_tokens = int(encoded["attention_mask"][i].sum())
            completions.append(
                Completion([texts[j] for j in rows], Usage(prompt_tokens, generated))
            )
        return completions

    async def complete(self, requests: list[Request], attempt: int) -> list[Completion]:
        return await asyncio.to_thread(self.generate, requests, attempt)

    async def aclose(self) -> None:
        return None
