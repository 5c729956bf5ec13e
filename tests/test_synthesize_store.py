"""Each generation is paid for once: the reply store shared by a repository's workspaces.

Every case counts what the fake OpenAI server served. Workspaces stand in for DVC's
temporary experiment workspaces: they share one ``DVC_ROOT`` (as queued experiments do) and
nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from fakes.openai_server import FakeOpenAIServer
from synth_helpers import (
    kill_9_mid_generation,
    make_workspace,
    openai_params,
    spawn_synthesize,
    write_synth_params,
)

from hybridscore import synthesize
from hybridscore.data import write_table
from hybridscore.llm import ReplyCache
from hybridscore.synth.select import COLUMNS

KEY = "sk-store-test"
HUMAN_ONLY = {"responses_per_label": 0}  # what `hybridscore sweep` sets for a ratio-0 cell
ROWS, METRICS, CACHE = "data/synthetic/rows.csv", "metrics/synthesize.json", "data/llm_cache"


@pytest.fixture
def repo(tmp_path) -> Path:
    """The main repository DVC would name in ``DVC_ROOT`` (only its ``.dvc`` folder)."""
    (tmp_path / "repo" / ".dvc").mkdir(parents=True)
    return tmp_path / "repo"


def synth(root: Path, monkeypatch, dvc_root: Path | None) -> dict:
    """Run the stage in-process under ``root`` (``DVC_ROOT`` as given); return its metrics."""
    monkeypatch.chdir(root)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    if dvc_root is None:
        monkeypatch.delenv("DVC_ROOT", raising=False)
    else:
        monkeypatch.setenv("DVC_ROOT", str(dvc_root))
    synthesize.main(["--no-progress"])
    return json.loads((root / METRICS).read_text())


def served(server: FakeOpenAIServer) -> tuple[int, int]:
    """(valid replies served, the most any one request was served)."""
    counts = server.stats.ok_by_key.values()
    return sum(counts), max(counts, default=0)


def test_workspaces_sharing_a_dvc_root_send_each_distinct_request_once(
    tmp_path, repo, monkeypatch
) -> None:
    with FakeOpenAIServer() as server:
        alone = make_workspace(tmp_path / "alone", openai_params(server.base_url))
        synth(alone, monkeypatch, None)  # today's behaviour: no shared store
        assert served(server) == (6, 1)
    with FakeOpenAIServer() as server:
        params = openai_params(server.base_url)
        first, second = (make_workspace(tmp_path / name, params) for name in ("a", "b"))
        synth(first, monkeypatch, repo)
        assert served(server) == (6, 1) and server.stats.chat_requests == 6
        report = synth(second, monkeypatch, repo)
        assert server.stats.chat_requests == 6  # the sibling paid for everything
        assert report["requests_sent"] == 0 and report["cache_hits"] == 6
        assert len(ReplyCache(second / CACHE)) == 6  # every reply also in its own cache
    for name in (ROWS, METRICS):  # the same bytes as a run on its own
        assert (first / name).read_bytes() == (alone / name).read_bytes()
    assert (second / ROWS).read_bytes() == (alone / ROWS).read_bytes()


def test_growing_responses_per_label_in_a_sibling_pays_only_the_new_requests(
    tmp_path, repo, monkeypatch
) -> None:
    with FakeOpenAIServer() as server:
        small = make_workspace(tmp_path / "small", openai_params(server.base_url))
        synth(small, monkeypatch, repo)
        big = make_workspace(
            tmp_path / "big", openai_params(server.base_url, responses_per_label=20)
        )
        report = synth(big, monkeypatch, repo)
        assert served(server) == (12, 1) and report["cache_hits"] == 6
        assert report["rows"] == 60


def test_a_human_only_cell_sends_nothing_and_writes_a_header_only_table(
    tmp_path, monkeypatch
) -> None:
    with FakeOpenAIServer() as server:
        root = make_workspace(tmp_path, openai_params(server.base_url))
        stale = pd.DataFrame([dict.fromkeys(COLUMNS, "x")])  # an earlier run's table
        write_table(stale, root / ROWS)
        write_synth_params(root, openai_params(server.base_url, **HUMAN_ONLY))
        report = synth(root, monkeypatch, None)
        assert server.stats.chat_requests == 0
    assert (root / ROWS).read_text() == ",".join(COLUMNS) + "\n"
    assert report["skipped"].startswith("synthesize.responses_per_label is 0")
    assert report["requests_sent"] == 0 and report["rows"] == 0
    assert (root / CACHE / "README.txt").is_file()  # the DVC output exists


def test_a_human_only_cell_loads_no_model_and_the_mix_ratio_is_not_read(
    tmp_path, monkeypatch
) -> None:
    root = make_workspace(tmp_path)
    write_synth_params(root, {"backend": "local", "model": "no-such-model", **HUMAN_ONLY})
    assert synth(root, monkeypatch, None)["rows"] == 0  # the model was never looked for

    with FakeOpenAIServer() as server:  # ratio 0 alone changes nothing here: mix decides
        write_synth_params(root, openai_params(server.base_url), {"mix": {"synthetic_ratio": 0}})
        report = synth(root, monkeypatch, None)
        assert report["rows"] == 30 and "skipped" not in report
        assert served(server) == (6, 1)


def test_two_concurrent_runs_of_one_generation_pay_for_it_once(tmp_path, repo) -> None:
    with FakeOpenAIServer(latency=0.02) as server:
        params = openai_params(server.base_url, responses_per_label=30, concurrency=2)
        roots = [make_workspace(tmp_path / name, params) for name in ("a", "b")]
        processes = [spawn_synthesize(root, KEY, repo) for root in roots]
        for process in processes:
            assert process.wait(timeout=120) == 0, process.stdout.read()
        assert served(server) == (18, 1) and server.stats.chat_requests == 18
    first, second = ((root / ROWS).read_bytes() for root in roots)
    assert first == second and len(ReplyCache(roots[1] / CACHE)) == 18


def test_kill_9_then_a_sibling_rerun_resends_at_most_the_in_flight_requests(tmp_path, repo) -> None:
    params = {"responses_per_label": 150, "concurrency": 3}
    with FakeOpenAIServer(latency=0.02) as server:
        killed = make_workspace(tmp_path / "killed", openai_params(server.base_url, **params))
        process = spawn_synthesize(killed, KEY, repo)
        served_before = kill_9_mid_generation(process, server)
        assert 0 < len(served_before) < 90
        sibling = make_workspace(tmp_path / "sibling", openai_params(server.base_url, **params))
        assert spawn_synthesize(sibling, KEY, repo).wait(timeout=120) == 0
        twice = [k for k, count in server.stats.ok_by_key.items() if count > 1]
    # only requests in flight at the kill (at most `concurrency`) may be sent again
    assert len(twice) <= 3 and set(twice) <= set(served_before)
    assert sum(server.stats.ok_by_key.values()) <= 90 + len(twice)
    assert len((sibling / ROWS).read_text().splitlines()) == 1 + 450
