"""Sharing the LLM cache through DVC: push, a teammate's pull + repro makes zero LLM calls;
queued sibling experiments (temporary workspaces, run concurrently) pay for a generation once."""

from __future__ import annotations

import json
import time

import pytest
from fakes.openai_server import FakeOpenAIServer
from synth_helpers import (
    LOCAL_PROMPTS,
    dvc,
    git,
    make_dvc_workspace,
    openai_params,
    write_synth_params,
)

from hybridscore.data import read_table

pytestmark = pytest.mark.slow


def test_pushed_cache_lets_a_teammate_repro_without_llm_calls(tmp_path) -> None:
    author, teammate, remote = tmp_path / "author", tmp_path / "teammate", tmp_path / "remote"
    with FakeOpenAIServer() as server:
        make_dvc_workspace(author, openai_params(server.base_url))
        dvc(author, "remote", "add", "-d", "store", str(remote))
        dvc(author, "repro")
        paid = server.stats.chat_requests
        assert paid > 0
        dvc(author, "push")
        git(author, "add", "-A")
        git(author, "commit", "-q", "-m", "synthetic data")

        git(tmp_path, "clone", "-q", str(author), str(teammate))
        dvc(teammate, "pull")
        dvc(teammate, "repro")  # up to date: nothing to send
        assert server.stats.chat_requests == paid
        assert read_table(teammate / "data/synthetic/rows.csv").equals(
            read_table(author / "data/synthetic/rows.csv")
        )

        # a bigger sweep point reuses the pulled replies and asks only for the new ones
        write_synth_params(
            teammate, openai_params(server.base_url, responses_per_label=20, **LOCAL_PROMPTS)
        )
        dvc(teammate, "repro")
        assert sum(server.stats.ok_by_key.values()) == 12
        assert max(server.stats.ok_by_key.values()) == 1
    assert len(read_table(teammate / "data/synthetic/rows.csv")) == 60


def test_queued_sibling_experiments_pay_for_one_generation_once(tmp_path) -> None:
    """Three cells of a sweep (ratio 0, 0.2, 0.5; one temperature) run by the real queue,
    two at a time, each in its own temporary workspace: one generation is sent, once."""
    with FakeOpenAIServer(latency=0.01) as server:
        root = make_dvc_workspace(tmp_path / "repo", openai_params(server.base_url))
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", "sweep")
        dvc(root, "exp", "run", "--queue", "-S", "mix.synthetic_ratio=0,0.2,0.5")
        dvc(root, "queue", "start", "-j", "2")
        deadline = time.monotonic() + 300
        while any(word in dvc(root, "queue", "status").stdout for word in ("Queued", "Running")):
            assert time.monotonic() < deadline, dvc(root, "queue", "status").stdout
            time.sleep(2)
        assert dvc(root, "queue", "status").stdout.count("Success") == 3
        assert sum(server.stats.ok_by_key.values()) == 6 == server.stats.chat_requests
        assert max(server.stats.ok_by_key.values()) == 1
    listed = git(root, "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps").stdout
    commits = [sha for ref, sha in map(str.split, listed.splitlines()) if "/celery/" not in ref]
    rows = sorted(
        json.loads(git(root, "show", f"{sha}:metrics/synthesize.json").stdout)["rows"]
        for sha in commits
    )
    assert rows == [30, 30, 30]  # one generation, the same rows in every cell (mix decides)
