"""Results shared through a git origin and a DVC remote, end to end with the whole pipeline and
the fake OpenAI server: a teammate's clone pays and trains for nothing unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import deep_update, make_project, run_make, run_ok
from fakes.openai_server import FakeOpenAIServer
from synth_helpers import openai_params
from test_pipeline import STAGES, TINY

pytestmark = pytest.mark.slow


def ran(output: str) -> set[str]:
    return {stage for stage in STAGES if f"Running stage '{stage}'" in output}


def hybridscore(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_ok([sys.executable, "-m", "hybridscore.cli", *args], cwd, env)


@pytest.mark.timeout(1800)
def test_a_teammate_pulls_results_and_pays_only_for_new_requests(tmp_path: Path) -> None:
    origin, store = tmp_path / "origin.git", tmp_path / "dvc-remote"
    a, b = tmp_path / "a", tmp_path / "b"
    with FakeOpenAIServer() as server:
        synth = openai_params(server.base_url, responses_per_label=4)
        env = make_project(a, deep_update(TINY, {"synthesize": synth}))
        env["OPENAI_API_KEY"] = "sk-remote-test"
        run_ok(["dvc", "remote", "add", "-d", "team", str(store)], a, env)
        assert ran(run_ok(["dvc", "repro"], a, env).stdout) == set(STAGES)
        paid = server.stats.chat_requests
        assert paid > 0
        run_ok(["dvc", "push"], a, env)
        run_ok(["dvc", "push", "--run-cache"], a, env)
        run_ok(["git", "add", "-A"], a, env)
        run_ok(["git", "commit", "-qm", "results"], a, env)
        run_ok(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp_path, env)
        run_ok(["git", "remote", "add", "origin", str(origin)], a, env)
        run_ok(["git", "push", "-q", "origin", "main"], a, env)

        # B: clone, pull, repro (what CI's `make pull` does): nothing is sent, nothing runs
        run_ok(["git", "clone", "-q", str(origin), str(b)], tmp_path, env)
        b_env = {**env, "PYTHONPATH": str(b / "src")}
        pulled = run_make(b, b_env, "pull").stdout
        assert ran(pulled) == set(), pulled[-3000:]
        assert server.stats.chat_requests == paid
        for path in ("models/student/config.json", "data/synthetic/rows.csv"):
            assert (b / path).exists(), path

        # a mix-only experiment: the pulled synthetic rows are reused, no request
        exp = run_ok(["dvc", "exp", "run", "-S", "mix.synthetic_ratio=0.8"], b, b_env).stdout
        assert "synthesize" not in ran(exp) and "mix" in ran(exp), ran(exp)
        assert ran(exp) <= set(STAGES[STAGES.index("mix") :])
        assert server.stats.chat_requests == paid

        # a new temperature: only the new requests, none sent twice
        hot = ["dvc", "exp", "run", "-S", "synthesize.temperature=0.3", "synthesize"]
        assert ran(run_ok(hot, b, b_env).stdout) == {"synthesize"}
        sent = json.loads((b / "metrics/synthesize.json").read_text())["requests_sent"]
        assert sent > 0
        assert server.stats.chat_requests == paid + sent
        assert max(server.stats.ok_by_key.values()) == 1

    # an experiment of A's travels to B through `dvc exp push` / `dvc exp pull`
    run_ok(["dvc", "exp", "run", "-n", "a-student-seed", "-S", "distill.seed=7"], a, env)
    run_ok(["dvc", "exp", "push", "origin", "a-student-seed"], a, env)
    run_ok(["dvc", "exp", "pull", "origin", "a-student-seed"], b, b_env)
    shown = run_ok(["dvc", "exp", "list", "--name-only"], b, b_env).stdout.split()
    assert "a-student-seed" in shown
    hybridscore("report", cwd=b, env=b_env)
    report = (b / "reports" / "report.md").read_text()
    assert "`distill.seed`" in report  # A's experiment is a seed of a cell in B's report
