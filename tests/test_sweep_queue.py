"""The experiment workflow end to end, through the real DVC queue and the fake OpenAI server:
a smoke grid that pays for each generation once, the report built from its experiments, a
failed cell surfaced by the sweep's exit status, and a grid split over two clones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import make_project, run_ok
from fakes.openai_server import FakeOpenAIServer
from synth_helpers import openai_params

pytestmark = pytest.mark.slow

TINY = {
    "prepare": {"max_rows_per_split": 36},
    "train_teacher": {"model": "pypi:all-minilm-l6-v2", "max_length": 32, "epochs": 1},
    "distill": {"num_layers": 1, "max_length": 32, "epochs": 1},
}
SMOKE = {
    "name": "smoke",
    "target": "evaluate",
    # one worker: two cells that write the same stage output at the same moment can trip a
    # DVC race ("unable to remove … without a confirmation"); concurrent generation sharing
    # is tested with -j 2 in test_synthesize_dvc.py
    "jobs": 1,
    "axes": {
        "mix.synthetic_ratio": [0.0, 0.8],
        "synthesize.temperature": [0.3, 0.9],
        "seed": [1, 2],
    },
}


def project_with_server(root: Path, base_url: str, grids: dict[str, dict]) -> dict[str, str]:
    """A committed project whose generator is the fake server, with ``grids`` in configs/."""
    params = {**TINY, "synthesize": openai_params(base_url, responses_per_label=6)}
    env = make_project(root, params)
    for name, grid in grids.items():
        (root / "configs" / "grids" / f"{name}.yaml").write_text(yaml.safe_dump(grid))
    env["OPENAI_API_KEY"] = "sk-sweep-test"
    run_ok(["git", "add", "-A"], root, env)
    run_ok(["git", "commit", "-qm", "grids"], root, env)
    return env


def hybridscore(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hybridscore.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def experiments(root: Path, env: dict[str, str]) -> dict[str, str]:
    """``{name: commit}`` of the experiments saved on top of HEAD."""
    head = run_ok(["git", "rev-parse", "HEAD"], root, env).stdout.strip()
    prefix = f"refs/exps/{head[:2]}/{head[2:]}/"
    refs = run_ok(
        ["git", "for-each-ref", "--format=%(refname) %(objectname)", prefix], root, env
    ).stdout
    return dict(
        (ref.removeprefix(prefix), sha) for ref, sha in (line.split() for line in refs.splitlines())
    )


def shown(root: Path, env: dict[str, str], commit: str, path: str) -> dict:
    return json.loads(run_ok(["git", "show", f"{commit}:{path}"], root, env).stdout)


def test_smoke_grid_pays_each_generation_once_and_reports(tmp_path: Path) -> None:
    root = tmp_path / "project"
    with FakeOpenAIServer() as server:
        env = project_with_server(root, server.base_url, {"smoke-test": SMOKE})
        done = hybridscore("sweep", "configs/grids/smoke-test.yaml", cwd=root, env=env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        found = experiments(root, env)
        assert len(found) == 6, found  # a human-only cell runs once, not per temperature
        planned = {}
        for name, commit in found.items():
            synthesis = shown(root, env, commit, "metrics/synthesize.json")
            ratio = "ratio0.8" in name
            planned[name] = synthesis["requests_planned"] if ratio else 0
            if not ratio:
                assert synthesis["requests_sent"] == 0, name  # human-only: nothing asked
        # one generation per temperature: every distinct request sent exactly once
        per_temperature = {
            temp: max(n for name, n in planned.items() if temp in name) for temp in ("0.3", "0.9")
        }
        assert all(per_temperature.values())
        assert max(server.stats.ok_by_key.values()) == 1
        assert sum(server.stats.ok_by_key.values()) == sum(per_temperature.values())

    report = hybridscore("report", cwd=root, env=env)
    assert report.returncode == 0, report.stderr
    text = (root / "reports" / "report.md").read_text()
    for cell in ("0.8", "0.3", "0.9"):
        assert cell in text
    assert list((root / "reports").glob("*.png"))


def test_a_failed_cell_fails_the_sweep(tmp_path: Path) -> None:
    root = tmp_path / "project"
    grid = {"name": "broken", "target": "prepare", "axes": {"prepare.val_fraction": [0.2, 0.9]}}
    with FakeOpenAIServer() as server:
        env = project_with_server(root, server.base_url, {"broken": grid})
        done = hybridscore("sweep", "configs/grids/broken.yaml", cwd=root, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED broken-val_fraction0.9" in done.stderr
    assert "stage 'prepare'" in done.stderr
    assert "prepare.val_fraction" in done.stderr  # the cell's own error, from its log
    assert "1 of 2 cell(s) failed" in done.stderr
    assert list(experiments(root, env)) == ["broken-val_fraction0.2"]


def test_a_grid_split_over_two_clones_comes_together(tmp_path: Path) -> None:
    grid = {"name": "shards", "target": "evaluate", "axes": {"seed": [1, 2]}}
    origin, remote = tmp_path / "origin.git", tmp_path / "dvc-remote"
    author = tmp_path / "author"
    with FakeOpenAIServer() as server:
        env = project_with_server(author, server.base_url, {"shards": grid})
        params = yaml.safe_load((author / "params.yaml").read_text())
        params["mix"]["synthetic_ratio"] = 0.0  # human only: the shards need no generation
        (author / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run_ok(["dvc", "remote", "add", "-d", "team", str(remote)], author, env)
        run_ok(["git", "add", "-A"], author, env)
        run_ok(["git", "commit", "-qm", "remote"], author, env)
        run_ok(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp_path, env)
        run_ok(["git", "remote", "add", "origin", str(origin)], author, env)
        run_ok(["git", "push", "-q", "origin", "main"], author, env)
        clones = [tmp_path / "machine1", tmp_path / "machine2"]
        for index, clone in enumerate(clones, start=1):
            run_ok(["git", "clone", "-q", str(origin), str(clone)], tmp_path, env)
            done = hybridscore(
                "sweep",
                "configs/grids/shards.yaml",
                "--shard",
                f"{index}/2",
                "--push",
                "origin",
                cwd=clone,
                env={**env, "PYTHONPATH": str(clone / "src")},
            )
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            assert len(experiments(clone, env)) == 1
    reader = tmp_path / "reader"
    run_ok(["git", "clone", "-q", str(origin), str(reader)], tmp_path, env)
    run_ok(["dvc", "exp", "pull", "origin"], reader, env)
    assert sorted(experiments(reader, env)) == ["shards-seed1", "shards-seed2"]
    report = hybridscore("report", cwd=reader, env={**env, "PYTHONPATH": str(reader / "src")})
    assert report.returncode == 0, report.stderr
    text = (reader / "reports" / "report.md").read_text()
    assert "2 experiment(s) in 1 of 1 grid cell(s)" in text  # both shards' seeds, one cell
