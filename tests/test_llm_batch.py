"""The openai-batch backend: submit, poll, fetch, resubmit failed items, resume after a restart."""

from __future__ import annotations

import json
import time

import pytest
from fakes.openai_server import CONTENT_FAULTS, FakeOpenAIServer, Faults
from synth_helpers import LABELS, make_workspace, openai_params, spawn_synthesize

from hybridscore import synthesize
from hybridscore.data import read_table

KEY = "sk-batch-test"


def batch_params(base_url: str, **overrides) -> dict:
    return openai_params(base_url, backend="openai-batch", batch_poll_s=0.05, **overrides)


def test_batch_backend_produces_every_row_and_counts_faults(tmp_path, monkeypatch) -> None:
    faults = Faults(server_error=0.1, invalid_json=0.1, wrong_label=0.1)
    with FakeOpenAIServer(faults=faults, seed=5, batch_polls=3) as server:
        make_workspace(tmp_path, batch_params(server.base_url, responses_per_label=40))
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        synthesize.main(["--no-progress"])
    rows = read_table(tmp_path / "data/synthetic/rows.csv")
    assert rows.groupby("label").size().to_dict() == dict.fromkeys(LABELS, 40)
    report = json.loads((tmp_path / "metrics/synthesize.json").read_text())
    content_faults = sum(server.stats.outcomes[f"batch_{k}"] for k in CONTENT_FAULTS)
    assert content_faults > 0 and sum(report["rejected_replies"].values()) == content_faults
    assert server.stats.batches_created >= 2  # failed items and rejected replies went again
    assert max(server.stats.ok_by_key.values()) == 1 and len(server.stats.ok_by_key) == 24
    # the Batch API costs half: half of gpt-4o's price for the tokens it used
    full = (report["prompt_tokens"] * 2.5 + report["completion_tokens"] * 10.0) / 1e6
    assert report["cost_usd"] > 0 and report["cost_usd"] == pytest.approx(full / 2, abs=1e-6)
    records = list((tmp_path / "data/llm_cache/batches").glob("*.json"))
    assert len(records) == server.stats.batches_created


def test_a_restarted_run_polls_the_batch_it_already_submitted(tmp_path) -> None:
    with FakeOpenAIServer(batch_polls=40) as server:  # ~2 s of polling before it completes
        make_workspace(tmp_path, batch_params(server.base_url))
        first = spawn_synthesize(tmp_path, KEY)
        state = tmp_path / "data/llm_cache/batches"
        deadline = time.monotonic() + 60
        while not list(state.glob("*.json")):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.02)
        first.kill()
        first.wait(timeout=10)
        assert server.stats.batches_created == 1
        second = spawn_synthesize(tmp_path, KEY)
        assert second.wait(timeout=120) == 0, second.communicate()[0]
        assert server.stats.batches_created == 1  # resumed, not resubmitted
    rows = read_table(tmp_path / "data/synthetic/rows.csv")
    assert len(rows) == 30
