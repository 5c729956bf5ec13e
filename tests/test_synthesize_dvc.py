"""Sharing the LLM cache through DVC: push, a teammate's pull + repro makes zero LLM calls."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from synth_helpers import PROMPTS, make_workspace, openai_params, write_params

from hybridscore.data import read_table
from hybridscore.llm.testing_server import FakeOpenAIServer

pytestmark = pytest.mark.slow

STAGE = {
    "stages": {
        "synthesize": {
            "cmd": f"{sys.executable} -m hybridscore.synthesize --no-progress",
            "deps": ["prompts", "data/prepared/train.csv", "data/prepared/labels.json"],
            "params": ["seed", "synthesize"],
            "outs": ["data/synthetic/rows.csv", {"data/llm_cache": {"persist": True}}],
            "metrics": [{"metrics/synthesize.json": {"cache": False}}],
        }
    }
}


def sh(cwd: Path, *args: str) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def dvc(cwd: Path, *args: str) -> str:
    return sh(cwd, sys.executable, "-m", "dvc", *args)


ENV = {
    **os.environ,
    "OPENAI_API_KEY": "sk-dvc-test",
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
}


def test_pushed_cache_lets_a_teammate_repro_without_llm_calls(tmp_path) -> None:
    author, teammate, remote = tmp_path / "author", tmp_path / "teammate", tmp_path / "remote"
    with FakeOpenAIServer() as server:
        local_prompts = {"prompt_template": "prompts/generate_responses.txt"}
        make_workspace(author, openai_params(server.base_url, **local_prompts))
        shutil.copytree(PROMPTS, author / "prompts")
        (author / "dvc.yaml").write_text(yaml.safe_dump(STAGE, sort_keys=False))
        sh(author, "git", "init", "-q")
        dvc(author, "init", "-q")
        dvc(author, "remote", "add", "-d", "store", str(remote))
        dvc(author, "repro")
        paid = server.stats.chat_requests
        assert paid > 0
        dvc(author, "push")
        sh(author, "git", "add", "-A")
        sh(author, "git", "commit", "-q", "-m", "synthetic data")

        sh(tmp_path, "git", "clone", "-q", str(author), str(teammate))
        dvc(teammate, "pull")
        dvc(teammate, "repro")  # up to date: nothing to send
        assert server.stats.chat_requests == paid
        assert read_table(teammate / "data/synthetic/rows.csv").equals(
            read_table(author / "data/synthetic/rows.csv")
        )

        # a bigger sweep point reuses the pulled replies and asks only for the new ones
        write_params(
            teammate, openai_params(server.base_url, responses_per_label=20, **local_prompts)
        )
        dvc(teammate, "repro")
        assert sum(server.stats.ok_by_key.values()) == 12
        assert max(server.stats.ok_by_key.values()) == 1
    assert len(read_table(teammate / "data/synthetic/rows.csv")) == 60
