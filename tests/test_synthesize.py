"""The synthesize stage end to end against the local fake OpenAI server (real SDK)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from fakes.openai_server import MISSING_MODEL, FakeOpenAIServer, Faults
from synth_helpers import (
    LABELS,
    LEAK_MARK,
    PROMPTS,
    files_text,
    kill_9_mid_generation,
    make_workspace,
    openai_params,
    spawn_synthesize,
    write_synth_params,
)

from hybridscore import mix, synthesize
from hybridscore.data import human_budget, read_table
from hybridscore.params import load_params
from hybridscore.synth.select import select_rows
from hybridscore.synth.textfilters import contamination

SECRET = "sk-proj-SECRET-do-not-leak-0123456789"


@pytest.fixture
def server():
    with FakeOpenAIServer(latency=0.001, faults=Faults.spread(0.2, 0.01), timeout_sleep=1.0) as s:
        yield s


def run_stage(root: Path, monkeypatch, *args: str) -> None:
    monkeypatch.chdir(root)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    synthesize.main(["--no-progress", *args])


def metrics(root: Path) -> dict:
    return json.loads((root / "metrics" / "synthesize.json").read_text())


def test_rows_come_from_train_only_and_no_held_out_text_reaches_a_prompt(
    tmp_path, monkeypatch, server
) -> None:
    make_workspace(tmp_path, openai_params(server.base_url))
    run_stage(tmp_path, monkeypatch)
    prompts = "\n".join(server.stats.prompts)
    train = read_table(tmp_path / "data/prepared/train.csv")
    assert LEAK_MARK not in prompts and "val student" not in prompts
    assert any(text in prompts for text in train["text"])  # the few-shot examples did arrive
    assert "Question 0: why do plants need light?" in prompts
    assert "Reference 1: plants make food with light." in prompts

    rows = read_table(tmp_path / "data/synthetic/rows.csv")
    assert list(rows.columns[:5]) == ["id", "question_id", "text", "label", "source"]
    assert (rows["source"] == "synthetic").all() and rows["id"].is_unique
    assert rows["id"].str.startswith("syn-").all()
    assert rows.groupby("label").size().to_dict() == dict.fromkeys(LABELS, 10)
    assert set(rows["question_id"]) == {"Q0", "Q1"}  # round-robin over the questions
    for _, row in rows.iterrows():  # every row is for the label its prompt asked for
        assert row["text"].startswith(f"{row['label']} answer ")
        assert row["question"] == f"Question {row['question_id'][1]}: why do plants need light?"
    report = metrics(tmp_path)
    assert report["rows_per_label"] == dict.fromkeys(LABELS, 10)
    assert report["requests_sent"] >= 6 and report["cost_usd"] > 0
    assert report["contamination"]["val"]["rows"] == 30
    val = read_table(tmp_path / "data/prepared/val.csv")["text"]
    human = contamination(train["text"], val, 5)  # the level of shared phrasing, not leakage
    assert report["contamination"]["val"]["human_train"] == {
        k: human[k] for k in synthesize.HUMAN_BASELINE
    }
    assert set(synthesize.HUMAN_BASELINE) < set(human)
    assert set(report) >= {
        "cache_hits",
        "retries",
        "rejections",
        "prompt_tokens",
        "duplicates_removed",
    }


def test_with_a_human_budget_prompts_see_only_the_budget_rows_mix_trains_on(
    tmp_path, monkeypatch, server
) -> None:
    make_workspace(tmp_path)
    budget = {"human_per_label": 1, "synthetic_ratio": 0.5, "seed": 3}
    write_synth_params(tmp_path, openai_params(server.base_url), {"mix": budget})
    run_stage(tmp_path, monkeypatch)
    train = read_table(tmp_path / "data/prepared/train.csv")
    kept = human_budget(train, 1, 3)
    prompts = "\n".join(server.stats.prompts)
    assert len(kept) == len(LABELS)  # one row per label of the 24 training rows
    assert all(text in prompts for text in kept["text"])
    assert not any(text in prompts for text in train.loc[~train.index.isin(kept.index), "text"])
    assert metrics(tmp_path)["example_rows"] == len(LABELS)

    mixed = tmp_path / "data/mixed/train.csv"
    mix.main(
        [
            "--human",
            str(tmp_path / "data/prepared/train.csv"),
            "--out",
            str(mixed),
            "--synthetic",
            str(tmp_path / "data/synthetic/rows.csv"),
            "--metrics",
            str(tmp_path / "metrics/mix.json"),
        ]
    )
    human = read_table(mixed).query("source == 'human'")
    assert sorted(human["id"]) == sorted(kept["id"])  # the same rows the prompts were built from


def test_with_a_human_budget_a_copy_of_any_training_text_is_still_rejected(
    tmp_path, monkeypatch
) -> None:
    """The budget narrows the prompts' examples only: the duplicate filter still compares each
    generated row with every training text, those outside the budget too."""
    make_workspace(tmp_path)
    budget = {"human_per_label": 1, "synthetic_ratio": 0.5, "seed": 3}
    write_synth_params(tmp_path, openai_params("http://127.0.0.1:9/v1"), {"mix": budget})
    monkeypatch.chdir(tmp_path)
    synthesis = synthesize.Synthesis.load(synthesize.Paths(), load_params())
    slot = synthesis.planner.base_slots()[0]
    train = read_table(tmp_path / "data/prepared/train.csv")
    unseen = train[~train["id"].isin(synthesis.planner.train["id"])]
    copied = unseen.loc[unseen["label"] == slot.label, "text"].iloc[0]  # no prompt showed it
    fresh = f"{slot.label} answer: sunlight lets the leaf build sugar from air and water"
    reply = json.dumps({"label": slot.label, "responses": [copied, fresh]})
    selection = select_rows([slot], {slot.request.key: [reply]}, synthesis.train, synthesis.params)
    assert selection.rejections["exact_duplicate_of_human"] == 1
    assert [row["text"] for row in selection.rows] == [fresh]


def test_a_generated_row_that_matches_a_val_or_test_answer_is_dropped(
    tmp_path, monkeypatch
) -> None:
    """The generator never sees val/test, but on short answers it may write one by chance:
    such a row (exact, or a near copy) is dropped, so evaluate's leakage audit finds none."""
    make_workspace(tmp_path)
    write_synth_params(tmp_path, openai_params("http://127.0.0.1:9/v1"))
    monkeypatch.chdir(tmp_path)
    synthesis = synthesize.Synthesis.load(synthesize.Paths(), load_params())
    slot = synthesis.planner.base_slots()[0]
    test_text = read_table(tmp_path / "data/prepared/test.csv")["text"].iloc[0]
    val_text = read_table(tmp_path / "data/prepared/val.csv")["text"].iloc[0]
    fresh = f"{slot.label} answer: sunlight lets the leaf build sugar from air and water"
    items = [test_text, f"{val_text}!", fresh]
    reply = json.dumps({"label": slot.label, "responses": items})
    replies = {slot.request.key: [reply]}
    kept = select_rows([slot], replies, synthesis.train, synthesis.params)
    assert len(kept.rows) == 3  # none is a human training answer
    held_out = synthesis.held_out_index()
    selection = select_rows([slot], replies, synthesis.train, synthesis.params, held_out=held_out)
    assert selection.rejections["matches_val_or_test"] == 2
    assert [row["text"] for row in selection.rows] == [fresh]


def test_growing_responses_per_label_sends_only_the_new_requests(
    tmp_path, monkeypatch, server
) -> None:
    make_workspace(tmp_path, openai_params(server.base_url))
    run_stage(tmp_path, monkeypatch)
    first = read_table(tmp_path / "data/synthetic/rows.csv")
    assert sum(server.stats.ok_by_key.values()) == 6  # 10 rows per label, 5 per request

    write_synth_params(tmp_path, openai_params(server.base_url, responses_per_label=20))
    run_stage(tmp_path, monkeypatch)
    assert sum(server.stats.ok_by_key.values()) == 12 and max(server.stats.ok_by_key.values()) == 1
    assert metrics(tmp_path)["cache_hits"] == 6
    second = read_table(tmp_path / "data/synthetic/rows.csv")
    assert set(first["id"]) < set(second["id"]) and len(second) == 60

    before = server.stats.chat_requests
    run_stage(tmp_path, monkeypatch)  # fully cached: no call at all
    assert server.stats.chat_requests == before and metrics(tmp_path)["requests_sent"] == 0
    assert read_table(tmp_path / "data/synthetic/rows.csv").equals(second)


def test_dry_run_estimates_cost_and_calls_nothing(tmp_path, monkeypatch, server, capsys) -> None:
    make_workspace(tmp_path, openai_params(server.base_url, responses_per_label=100))
    run_stage(tmp_path, monkeypatch, "--dry-run")
    out = capsys.readouterr().out
    assert server.stats.chat_requests == 0 and not (tmp_path / "data/synthetic").exists()
    assert "requests planned: 60 (0 cached, 60 to send" in out
    cost = float(out.split("estimated cost: $")[1].split()[0])
    assert 0 < cost < 1


def test_budget_cap_stops_cleanly_and_keeps_what_was_made(tmp_path, monkeypatch) -> None:
    with FakeOpenAIServer() as clean_server:
        params = openai_params(clean_server.base_url, responses_per_label=50, budget_usd=0.02)
        make_workspace(tmp_path, params)
        run_stage(tmp_path, monkeypatch)
    report = metrics(tmp_path)
    assert report["budget_exhausted"] is True and report["cost_usd"] <= 0.02
    assert 0 < report["requests_sent"] < report["requests_planned"]
    rows = read_table(tmp_path / "data/synthetic/rows.csv")
    assert 0 < len(rows) < 150 and len(rows) == report["rows"]


def test_the_api_key_never_reaches_logs_params_metrics_or_outputs(
    tmp_path, monkeypatch, server, capfd
) -> None:
    make_workspace(tmp_path, openai_params(server.base_url))
    run_stage(tmp_path, monkeypatch)
    run_stage(tmp_path, monkeypatch, "--dry-run")
    logs = capfd.readouterr()
    assert f"Bearer {SECRET}" in server.stats.authorization  # it was really used
    assert SECRET not in logs.out + logs.err
    assert SECRET not in files_text(tmp_path)
    assert (tmp_path / "data/llm_cache").is_dir()


def test_a_label_without_usable_replies_fails_with_a_clear_message(tmp_path, monkeypatch) -> None:
    with FakeOpenAIServer(faults=Faults(wrong_label=1.0)) as bad_server:
        make_workspace(tmp_path, openai_params(bad_server.base_url, max_reasks=1, topup_rounds=0))
        with pytest.raises(SystemExit) as info:
            run_stage(tmp_path, monkeypatch)
    assert info.value.code == 2
    assert not (tmp_path / "data/synthetic/rows.csv").exists()


def test_a_reply_prefill_template_is_refused_for_an_api_backend(
    tmp_path, monkeypatch, capsys, server
) -> None:
    template = str(PROMPTS / "generate_responses_examples.txt")
    make_workspace(tmp_path, openai_params(server.base_url, prompt_template=template))
    with pytest.raises(SystemExit) as info:
        run_stage(tmp_path, monkeypatch)
    assert info.value.code == 2 and server.stats.chat_requests == 0
    message = capsys.readouterr().err
    assert "generate_responses_examples.txt" in message and "local backend only" in message
    assert not (tmp_path / "data/synthetic/rows.csv").exists()


def test_a_permanent_http_error_is_named_in_the_failure(tmp_path, monkeypatch, capsys) -> None:
    with FakeOpenAIServer() as server:
        prices = {"prices": {MISSING_MODEL: [1.0, 1.0]}}
        make_workspace(tmp_path, openai_params(server.base_url, model=MISSING_MODEL, **prices))
        with pytest.raises(SystemExit):
            run_stage(tmp_path, monkeypatch)
    message = capsys.readouterr().err
    assert "http_404" in message and "request(s) failed" in message


def test_consistency_filter_drops_rows_a_second_grading_pass_disagrees_with(
    tmp_path, monkeypatch
) -> None:
    with FakeOpenAIServer(disagree=0.3) as grading_server:
        params = openai_params(grading_server.base_url, consistency_filter=True, topup_rounds=3)
        make_workspace(tmp_path, params)
        run_stage(tmp_path, monkeypatch)
    grades = grading_server.stats.grades
    report = metrics(tmp_path)
    assert grades["disagreed"] > 0 and grades["agreed"] >= 30
    assert report["rejections"]["inconsistent_grade"] == grades["disagreed"]
    assert report["rows_per_label"] == dict.fromkeys(LABELS, 10)  # top-ups replaced them
    prompts = [p for p in grading_server.stats.prompts if "Student answer:" in p]
    assert prompts and not any("graded" in p for p in prompts)  # blind: no intended label


def test_kill_9_then_rerun_loses_nothing_and_matches_an_uninterrupted_run(tmp_path) -> None:
    params = {"responses_per_label": 150, "concurrency": 3}
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    with FakeOpenAIServer(latency=0.02) as server:
        make_workspace(reference, openai_params(server.base_url, **params))
        assert spawn_synthesize(reference, SECRET).wait(timeout=120) == 0
    with FakeOpenAIServer(latency=0.02) as server:
        make_workspace(killed, openai_params(server.base_url, **params))
        process = spawn_synthesize(killed, SECRET)
        served_before = kill_9_mid_generation(process, server)
        assert 0 < len(served_before) < 90 and not (killed / "data/synthetic/rows.csv").exists()
        assert spawn_synthesize(killed, SECRET).wait(timeout=120) == 0
        twice = [k for k, count in server.stats.ok_by_key.items() if count > 1]
    # only requests in flight at the kill (at most `concurrency`) may be sent again
    assert len(twice) <= 3 and set(twice) <= set(served_before)
    assert sum(server.stats.ok_by_key.values()) <= 90 + len(twice)
    ours = pd.read_csv(killed / "data/synthetic/rows.csv", dtype=str, keep_default_na=False)
    theirs = pd.read_csv(reference / "data/synthetic/rows.csv", dtype=str, keep_default_na=False)
    assert ours.equals(theirs) and len(ours) == 450


def test_help_prints_the_path_arguments_and_runs_nothing(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        synthesize.main(["--help"])
    assert info.value.code == 0 and not list(tmp_path.iterdir())
    out = capsys.readouterr().out
    for option in ("--train", "--labels", "--val", "--test", "--cache", "--out", "--metrics"):
        assert option in out


def test_paths_given_as_arguments_are_the_ones_used(tmp_path, monkeypatch, server) -> None:
    make_workspace(tmp_path, openai_params(server.base_url))
    prepared = tmp_path / "data/prepared"
    moved = tmp_path / "elsewhere"
    prepared.rename(moved)
    run_stage(
        tmp_path,
        monkeypatch,
        *("--train", str(moved / "train.csv"), "--labels", str(moved / "labels.json")),
        *("--val", str(moved / "val.csv"), "--test", str(moved / "test.csv")),
        *("--cache", "cache", "--out", "out/rows.csv", "--metrics", "out/metrics.json"),
    )
    assert len(read_table(tmp_path / "out/rows.csv")) == 30
    report = json.loads((tmp_path / "out/metrics.json").read_text())
    assert report["contamination"]["test"]["rows"] == 30
    assert (tmp_path / "cache/README.txt").exists() and not list((tmp_path / "data").iterdir())
