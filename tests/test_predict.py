"""``hybridscore predict``: CSV streaming, bad input, the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import interruptible
from scorer_helpers import LABELS, predict_cli, responses

from hybridscore import predict
from hybridscore.errors import HybridscoreError
from hybridscore.predict import score_csv
from hybridscore.scoring import ONNX_INT8_FILE, Scorer

PROB_COLUMNS = [f"prob_{label}" for label in LABELS]


@pytest.fixture(scope="module")
def scorer(tiny_models) -> Scorer:
    return Scorer.load(tiny_models[0], batch_size=4)


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


def test_cli_main_scores_a_csv(
    tmp_path: Path, tiny_models, capsys: pytest.CaptureFixture[str]
) -> None:
    pd.DataFrame({"text": responses(5)}).to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "scored.csv"
    predict.main(["--model", str(tiny_models[1]), str(tmp_path / "in.csv"), "-o", str(out),
                  "--batch-size", "2", "--max-length", "16"])  # fmt: skip
    assert len(pd.read_csv(out)) == 5
    assert f"scored 5 rows with {tiny_models[1] / ONNX_INT8_FILE}" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["folder", "under-a-file", "under-a-missing-folder-in-a-file",
                                   "unwritable"])  # fmt: skip
def test_real_cli_refuses_an_unwritable_output_before_loading_the_model(
    tmp_path: Path, where: str
) -> None:
    """One message naming the path and exit 2, checked first: the model here does not even
    exist, so a check made after loading it would report the model instead."""
    (tmp_path / "in.csv").write_text("text\nlight\n", encoding="utf-8")
    (tmp_path / "a_file.csv").write_text("keep", encoding="utf-8")
    out, message = {
        "folder": (tmp_path, "is a folder; -o takes a file name"),
        "under-a-file": (tmp_path / "a_file.csv" / "x.csv", f"{tmp_path / 'a_file.csv'} is a file"),
        "under-a-missing-folder-in-a-file": (tmp_path / "a_file.csv" / "sub" / "x.csv",
                                             f"{tmp_path / 'a_file.csv'} is a file, not a folder"),
        "unwritable": (Path("/sys/hybridscore-test.csv") if os.geteuid() == 0
                       else tmp_path / "locked" / "x.csv", "cannot write there: folder "),
    }[where]  # fmt: skip
    if where == "unwritable" and os.geteuid() != 0:
        (tmp_path / "locked").mkdir(mode=0o500)
    source, model = str(tmp_path / "in.csv"), str(tmp_path / "no_model")
    command = predict_cli("--model", model, source, "-o", str(out))
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"predict: error: {out}: " in done.stderr and message in done.stderr
    assert "Traceback" not in done.stderr and "model folder" not in done.stderr
    assert (tmp_path / "a_file.csv").read_text(encoding="utf-8") == "keep"


def test_output_equal_to_the_input_needs_overwrite(
    tmp_path: Path, tiny_models, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same file under any spelling (also a symlink) is refused, and the input is kept;
    with --overwrite it is replaced by its scored copy."""
    source = tmp_path / "data" / "in.csv"
    source.parent.mkdir()
    pd.DataFrame({"text": responses(5)}).to_csv(source, index=False)
    original = source.read_bytes()
    (tmp_path / "link.csv").symlink_to(source)
    spellings = [source, tmp_path / "data" / ".." / "data" / "in.csv", tmp_path / "link.csv"]
    for out in spellings:
        with pytest.raises(SystemExit) as exit_info:
            predict.main(["--model", str(tiny_models[1]), str(source), "-o", str(out)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert f"predict: error: {out}: is the input file {source}; " in err
        assert "--overwrite" in err
        assert source.read_bytes() == original
    link = str(tmp_path / "link.csv")
    with pytest.raises(SystemExit, match="2"):  # the link as the input, the file as the output
        predict.main(["--model", str(tiny_models[1]), link, "-o", str(source)])
    predict.main(["--model", str(tiny_models[1]), str(source), "-o", str(source), "--overwrite",
                  "--no-progress"])  # fmt: skip
    scored = pd.read_csv(source)
    assert list(scored.columns) == ["text", "predicted_label", *PROB_COLUMNS]
    assert scored["text"].tolist() == responses(5)
    assert sorted(p.name for p in source.parent.iterdir()) == ["in.csv"]  # no partial left


def test_score_csv_refuses_its_input_as_output(tmp_path: Path, scorer: Scorer) -> None:
    pd.DataFrame({"text": responses(3)}).to_csv(tmp_path / "in.csv", index=False)
    original = (tmp_path / "in.csv").read_bytes()
    with pytest.raises(HybridscoreError, match="is the input file"):
        score_csv(scorer, tmp_path / "in.csv", tmp_path / "in.csv", progress=False)
    assert (tmp_path / "in.csv").read_bytes() == original


BIG_ROWS = 100_000  # ~10 s of scoring with the tiny model: time to be interrupted mid-way


def start_scoring(tmp_path: Path, onnx_dir: Path) -> tuple[subprocess.Popen, Path]:
    """A real predict over a large CSV into ``scored.csv`` (which holds an older result),
    returned once its first block is in the partial file."""
    pd.DataFrame({"text": responses(BIG_ROWS)}).to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "scored.csv"
    out.write_text("old result\n", encoding="utf-8")
    command = predict_cli("--model", str(onnx_dir), str(tmp_path / "in.csv"), "-o", str(out),
                          "--no-progress", "--threads", "1")  # fmt: skip
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=interruptible)  # fmt: skip
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size for p in partials(tmp_path)):
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "predict wrote nothing in 120 s"
        time.sleep(0.02)
    return run, out


def partials(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".")]


def test_ctrl_c_says_what_was_kept_and_exits_130(tmp_path: Path, tiny_models) -> None:
    run, out = start_scoring(tmp_path, tiny_models[1])
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert f"predict: interrupted: nothing written to {out} (" in err
    assert f" of about {BIG_ROWS} rows were scored; the previous {out} is kept as it was)" in err
    assert "Traceback" not in err
    assert out.read_text(encoding="utf-8") == "old result\n"
    assert partials(tmp_path) == []


def test_a_killed_run_leaves_no_csv_lookalike_and_the_next_run_cleans_up(
    tmp_path: Path, tiny_models
) -> None:
    run, out = start_scoring(tmp_path, tiny_models[1])
    run.kill()
    run.communicate(timeout=120)
    (left,) = partials(tmp_path)
    assert left.name.startswith(f".scored.csv.{run.pid}.") and left.name.endswith(".partial")
    assert out.read_text(encoding="utf-8") == "old result\n"
    pd.DataFrame({"text": responses(3)}).to_csv(tmp_path / "small.csv", index=False)
    command = predict_cli("--model", str(tiny_models[1]), str(tmp_path / "small.csv"), "-o",
                          str(out), "--no-progress")  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(pd.read_csv(out)) == 3
    assert partials(tmp_path) == []
