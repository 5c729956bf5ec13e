"""LLM faults, one case each: the exit code, the one message, and the previous outputs intact.

Every case runs the synthesize stage against the fake OpenAI server with one fault injected:
failing requests (a short generation), replies rejected after every re-ask, a failure that the
top-up round repairs, Ctrl-C, a Batch API server that sends an unusable batch id, and the dry
run's bounds. The figures of docs/reliability.md come from these cases.
"""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest
from fakes.openai_server import FakeOpenAIServer, Faults
from synth_helpers import (
    LABELS,
    dvc,
    dvc_fails,
    make_dvc_workspace,
    make_workspace,
    openai_params,
    spawn_synthesize,
    write_synth_params,
)

from hybridscore import synthesize
from hybridscore.data import read_table
from hybridscore.llm import ReplyCache

KEY = "sk-faults-test"
OUTPUTS = ("data/synthetic/rows.csv", "metrics/synthesize.json")
CACHE = "data/llm_cache"


def synth(root: Path, monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run the stage in-process under ``root``: (exit code, stderr)."""
    monkeypatch.chdir(root)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    capsys.readouterr()
    try:
        synthesize.main(["--no-progress", *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def outputs(root: Path) -> dict[str, bytes]:
    """The stage outputs DVC would record (rows and metrics), as bytes."""
    return {name: (root / name).read_bytes() for name in OUTPUTS if (root / name).exists()}


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error:" in line]


def test_a_short_generation_fails_keeps_every_reply_and_the_rerun_pays_only_the_missing(
    tmp_path, monkeypatch, capsys
) -> None:
    with FakeOpenAIServer() as server:
        params = openai_params(server.base_url, max_retries=0)
        make_workspace(tmp_path, params)
        assert synth(tmp_path, monkeypatch, capsys)[0] == 0  # 10 rows per label, 6 requests
        before = outputs(tmp_path)

        server.faults = Faults(server_error=1.0)  # every new request fails
        write_synth_params(tmp_path, {**params, "responses_per_label": 20})
        code, err = synth(tmp_path, monkeypatch, capsys)
        assert code == 2 and outputs(tmp_path) == before  # nothing DVC could take for done
        assert len(errors(err)) == 1, err
        kept = len(ReplyCache(tmp_path / CACHE))
        assert kept == 6
        message = errors(err)[0]
        assert "30 of 60 rows" in message and "min_fill 1.0" in message
        assert re.search(r"\b18 request\(s\) failed, last: http_50[03]\b", message), message
        assert f"rerun `dvc repro`: the {kept} replies kept in {CACHE} are reused" in message
        assert "only the missing requests are sent" in message

        server.faults = Faults()
        sent = server.stats.chat_requests
        assert synth(tmp_path, monkeypatch, capsys)[0] == 0
    report = json.loads((tmp_path / OUTPUTS[1]).read_text())
    assert server.stats.chat_requests - sent == report["requests_sent"] == 6
    assert report["cache_hits"] == kept and max(server.stats.ok_by_key.values()) == 1
    rows = read_table(tmp_path / OUTPUTS[0])
    assert rows.groupby("label").size().to_dict() == dict.fromkeys(LABELS, 20)


def test_min_fill_below_one_accepts_a_partial_generation(tmp_path, monkeypatch, capsys) -> None:
    with FakeOpenAIServer() as server:
        make_workspace(tmp_path, openai_params(server.base_url, max_retries=0))
        assert synth(tmp_path, monkeypatch, capsys)[0] == 0
        server.faults = Faults(server_error=1.0)
        params = openai_params(server.base_url, max_retries=0, min_fill=0.5)
        write_synth_params(tmp_path, {**params, "responses_per_label": 20})
        code, err = synth(tmp_path, monkeypatch, capsys)
    assert code == 0 and "18 request(s) failed" in err and "rerun" in err
    assert len(read_table(tmp_path / OUTPUTS[0])) == 30


def test_replies_rejected_after_every_reask_name_the_reason(tmp_path, monkeypatch, capsys) -> None:
    with FakeOpenAIServer(faults=Faults(wrong_label=1.0)) as server:
        make_workspace(tmp_path, openai_params(server.base_url, max_reasks=1, topup_rounds=0))
        code, err = synth(tmp_path, monkeypatch, capsys)
    assert code == 2 and not outputs(tmp_path) and len(errors(err)) == 1
    message = errors(err)[0]
    assert "last: ." not in message
    assert re.search(r"6 request\(s\) failed, last: rejected_after_reasks: \w", message), message


def test_a_failure_the_topup_round_repairs_is_not_reported_as_failed(
    tmp_path, monkeypatch, capsys
) -> None:
    with FakeOpenAIServer(fail_first=1) as server:  # only the very first request fails
        make_workspace(tmp_path, openai_params(server.base_url, max_retries=0, concurrency=1))
        code, err = synth(tmp_path, monkeypatch, capsys)
    assert code == 0 and "failed" not in err, err
    report = json.loads((tmp_path / OUTPUTS[1]).read_text())
    assert report["failed_requests"] == 0 and report["failures_by_reason"] == {}
    assert report["rows_per_label"] == dict.fromkeys(LABELS, 10)


def test_dry_run_bounds_are_never_below_its_estimates(tmp_path, monkeypatch, capsys) -> None:
    params = openai_params("http://127.0.0.1:9/v1", responses_per_request=10, max_new_tokens=30)
    make_workspace(tmp_path, params)
    monkeypatch.chdir(tmp_path)
    synthesize.main(["--no-progress", "--dry-run"])
    out = capsys.readouterr().out
    tokens = re.search(r"completion tokens: ([\d,]+) \(at most ([\d,]+)\)", out)
    cost = re.search(r"cost: \$([\d.]+) \(at most \$([\d.]+)\)", out)
    assert tokens and cost, out
    estimate, bound = (int(x.replace(",", "")) for x in tokens.groups())
    assert 0 < estimate <= bound
    assert 0 < float(cost[1]) <= float(cost[2])
    assert not outputs(tmp_path)


BAD_IDS = ["../../x", "", "b" * 300, "batch id!", "batch/0001", "..", "batch_1\n"]


@pytest.mark.parametrize(
    "bad_id", BAD_IDS, ids=["traversal", "empty", "long", "space", "slash", "dotdot", "newline"]
)
def test_an_invalid_batch_id_is_refused_with_one_message(
    bad_id, tmp_path, monkeypatch, capsys
) -> None:
    with FakeOpenAIServer() as server:
        params = openai_params(server.base_url, backend="openai-batch", batch_poll_s=0.01)
        make_workspace(tmp_path, params)
        assert synth(tmp_path, monkeypatch, capsys)[0] == 0
        before, files = outputs(tmp_path), set(tmp_path.rglob("*"))
        server.batch_id = bad_id
        write_synth_params(tmp_path, {**params, "responses_per_label": 20})
        code, err = synth(tmp_path, monkeypatch, capsys)
    assert code == 2 and outputs(tmp_path) == before and "Traceback" not in err
    assert len(errors(err)) == 1 and "invalid batch id" in errors(err)[0], err
    new = set(tmp_path.rglob("*")) - files
    assert all(p.is_relative_to(tmp_path / CACHE) for p in new), new
    batches = tmp_path / CACHE / "batches"
    assert all(re.fullmatch(r"[\w-]+\.json", p.name) for p in batches.iterdir())


@pytest.mark.slow
def test_ctrl_c_says_what_was_kept_exits_130_and_the_rerun_resends_only_in_flight(
    tmp_path,
) -> None:
    with FakeOpenAIServer(latency=0.02) as server:
        params = openai_params(server.base_url, concurrency=3)
        make_workspace(tmp_path, params)
        assert spawn_synthesize(tmp_path, KEY).wait(timeout=120) == 0
        before = outputs(tmp_path)
        write_synth_params(tmp_path, {**params, "responses_per_label": 150})  # 90 requests
        process = spawn_synthesize(tmp_path, KEY)
        deadline = time.monotonic() + 60
        while sum(server.stats.ok_by_key.values()) < 30:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
        assert process.returncode == 130, out
        assert "Traceback" not in out and outputs(tmp_path) == before
        kept = len(ReplyCache(tmp_path / CACHE))
        assert f"kept {kept} replies in {CACHE}; rerun to resume" in out, out
        served = dict(server.stats.ok_by_key)
        assert spawn_synthesize(tmp_path, KEY).wait(timeout=120) == 0
    twice = [k for k, count in server.stats.ok_by_key.items() if count > 1]
    # only requests in flight at the interrupt (at most `concurrency`) may be sent again
    assert len(twice) <= 3 and set(twice) <= set(served)
    print(f"\nfigures: ctrl-c kept {kept} replies, re-sent {len(twice)} (in flight <= 3)")
    assert len(read_table(tmp_path / OUTPUTS[0])) == 450


@pytest.mark.slow
def test_dvc_does_not_record_a_short_generation_and_the_next_repro_pays_only_the_missing(
    tmp_path,
) -> None:
    with FakeOpenAIServer(fail_first=3) as server:  # 3 of the 6 requests fail
        params = openai_params(server.base_url, max_retries=0, concurrency=1, topup_rounds=0)
        make_dvc_workspace(tmp_path, params)
        failed = dvc_fails(tmp_path, "repro")
        assert "15 of 30 rows" in failed.stderr and "exited with 2" in failed.stderr
        assert "rerun `dvc repro`: the 3 replies kept in data/llm_cache" in failed.stderr
        assert not outputs(tmp_path) and len(ReplyCache(tmp_path / CACHE)) == 3
        assert "synthesize" in dvc(tmp_path, "status").stdout  # not taken for done
        sent = server.stats.chat_requests
        dvc(tmp_path, "repro")
        assert server.stats.chat_requests - sent == 3  # only the missing requests
        assert max(server.stats.ok_by_key.values()) == 1
        assert "changed" not in dvc(tmp_path, "status").stdout
    assert len(read_table(tmp_path / OUTPUTS[0])) == 30
