"""`make pr-report` against a real two-commit history (base branch + a pull request's branch)
in a reviewer's fresh clone, and the CI workflows that run the same make targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO, make_project, project_env, run_make, run_ok, write_params

from hybridscore.pr_report import moved
from hybridscore.report import METRICS, ROLES, SPLITS

WORKFLOW = REPO / ".github" / "workflows" / "pr-metrics.yml"
TEST_WORKFLOW = REPO / ".github" / "workflows" / "test.yml"
# what CI runs, in order; `setup` runs as every target's prerequisite, `pull` in test_remote.py
CI_MAKE_STEPS = ["make setup", "make pull", "make pr-report BASE=origin/${{ github.base_ref }}"]
QUALITY = "dvclive/evaluate/metrics.json"
INT8 = "dvclive/evaluate_int8/metrics.json"


def scores(offset: float = 0.0) -> dict:
    return {
        split: {m: round(0.5 + 0.01 * i + offset, 4) for i, m in enumerate(METRICS)}
        for split in SPLITS
    }


def write_json(root: Path, path: str, value: dict) -> None:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text(json.dumps(value, indent=2))


def read_json(root: Path, path: str) -> dict:
    return json.loads((root / path).read_text())


def commit(root: Path, env: dict[str, str], message: str) -> None:
    run_ok(["git", "add", "-A"], root, env)
    run_ok(["git", "commit", "-qm", message], root, env)


def table(text: str, heading: str) -> list[list[str]]:
    """The body rows of the first Markdown table after ``heading``."""
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in rows]


def pull_request(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """origin (bare) with `main` = outputs of a run and `feature` = one param change + new
    metrics; returns a reviewer's clone of `feature` (no DVC cache, only the remote)."""
    author, origin = tmp_path / "author", tmp_path / "origin.git"
    env = make_project(author)
    write_json(author, QUALITY, {"teacher": scores(), "student": scores(0.1)})
    (author / INT8).unlink(missing_ok=True)  # the INT8 scorer is new in this PR
    run_ok(["dvc", "remote", "add", "-d", "team", str(tmp_path / "dvc-remote")], author, env)
    commit(author, env, "baseline results")
    run_ok(["git", "init", "-q", "--bare", str(origin)], tmp_path, env)
    run_ok(["git", "remote", "add", "origin", str(origin)], author, env)
    run_ok(["git", "push", "-q", "origin", "main"], author, env)

    run_ok(["git", "checkout", "-qb", "feature"], author, env)
    write_params(author, {"mix": {"synthetic_ratio": 0.4}})
    teacher = scores()
    teacher["test"]["qwk"] = 0.62  # moved; the student's metrics did not
    write_json(author, QUALITY, {"teacher": teacher, "student": scores(0.1)})
    write_json(author, INT8, {"int8": scores(0.05)})  # new in this PR
    train = read_json(author, "metrics/train_teacher.json")
    train["train_samples_per_second"] *= 1.1  # within the noise
    train["peak_memory_mb"] *= 1.5  # beyond it
    write_json(author, "metrics/train_teacher.json", train)
    mix = read_json(author, "metrics/mix.json")
    mix["synthetic_rows"] += 1  # a count: any change
    mix["kept_per_label"] = 5  # new at HEAD
    write_json(author, "metrics/mix.json", mix)
    commit(author, env, "more synthetic rows")
    run_ok(["git", "push", "-q", "origin", "feature"], author, env)

    reviewer = tmp_path / "reviewer"
    run_ok(["git", "clone", "-q", "-b", "feature", str(origin), str(reviewer)], tmp_path, env)
    return reviewer, {**env, "PYTHONPATH": str(reviewer / "src")}


def test_pr_report_shows_the_param_every_quality_metric_and_what_moved(tmp_path: Path) -> None:
    reviewer, env = pull_request(tmp_path)
    run_make(reviewer, env, "pr-report", "BASE=origin/main")
    out = reviewer / "reports" / "pr"
    text = (out / "report.md").read_text()

    params = table(text, "## Params that changed")
    assert [r[1] for r in params] == ["mix.synthetic_ratio"], params
    assert params[0][2:] == ["0.2", "0.4"]

    quality = {tuple(r[:3]): r[3:] for r in table(text, "## Quality metrics")}
    names = {"qwk": "QWK", "macro_f1": "macro-F1", "accuracy": "accuracy", "roc_auc": "ROC-AUC"}
    expected = {(role, s, names[m]) for role in ROLES for s in SPLITS for m in METRICS}
    assert set(quality) == expected  # every one, changed or not
    assert quality["teacher", "test", "QWK"] == ["0.500", "0.620", "+0.120"]
    assert quality["student", "val", "ROC-AUC"] == ["0.630", "0.630", "+0.000"]
    assert quality["int8", "test", "accuracy"] == ["–", "0.570", "new"]
    assert text.index("## Quality metrics") < text.index("## Operational counters")

    moved = {(r[0], r[1]): r[4] for r in table(text, "## Operational counters that moved")}
    assert moved == {
        ("metrics/train_teacher.json", "peak_memory_mb"): "+50%",
        ("metrics/mix.json", "synthetic_rows"): "+1",
        ("metrics/mix.json", "kept_per_label"): "new",
    }
    assert "±25%" in text  # the noise rule is stated

    synthesis = {r[0]: r[1:] for r in table(text, "## Synthesis")}
    assert {"rows", "rows_per_label", "requests_sent", "cost_usd"} <= set(synthesis)

    for name in ("confusion_teacher_test.png", "confusion_student_test.png"):
        assert f"![{name}]({name})" in text
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    assert (out / "curves_train_teacher.png").exists()

    # in CI the plots are linked to the run's artifact instead of embedded
    ci = {
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "team/hybridscore",
        "GITHUB_RUN_ID": "42",
    }
    run_make(reviewer, {**env, **ci}, "pr-report", "BASE=origin/main")
    linked = (out / "report.md").read_text()
    assert "](https://github.com/team/hybridscore/actions/runs/42)" in linked
    assert "![" not in linked


def steps(path: Path) -> tuple[dict, list[dict]]:
    workflow = yaml.safe_load(path.read_text())
    jobs = list(workflow["jobs"].values())
    assert len(jobs) == 1
    return workflow, jobs[0]["steps"]


def test_pr_workflow_runs_the_tested_make_targets_and_posts_one_comment() -> None:
    workflow, found = steps(WORKFLOW)
    assert "pull_request" in workflow.get("on", workflow.get(True))  # YAML 1.1 reads `on` as True
    assert workflow["permissions"]["pull-requests"] == "write"
    runs = [s["run"].strip() for s in found if "run" in s]
    assert [r for r in runs if r.startswith("make ")] == CI_MAKE_STEPS
    uses = {s["uses"].split("@")[0]: s.get("with", {}) for s in found if "uses" in s}
    assert uses["actions/checkout"]["fetch-depth"] == 0
    assert uses["actions/setup-python"]["python-version"] == "3.11"
    assert uses["actions/upload-artifact"]["path"] == "reports/pr/"
    assert any("$GITHUB_STEP_SUMMARY" in r and "reports/pr/report.md" in r for r in runs)
    comment = next(s for s in found if "gh pr comment" in s.get("run", ""))
    for flag in ("--body-file reports/pr/report.md", "--edit-last", "--create-if-none"):
        assert flag in comment["run"]
    assert comment["env"]["GH_TOKEN"] == "${{ github.token }}"
    # credentials only from secrets, and never echoed
    job_env = next(iter(workflow["jobs"].values()))["env"]
    assert all(v.startswith("${{ secrets.") for k, v in job_env.items() if k.startswith("AWS_"))
    assert not any("echo" in r and "secrets" in r for r in runs)


def test_test_workflow_runs_make_test_on_push() -> None:
    workflow, found = steps(TEST_WORKFLOW)
    assert {"push", "pull_request"} <= set(workflow.get("on", workflow.get(True)))
    assert [s["run"] for s in found if "run" in s] == ["bash .ci/run"]
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_make_targets_exist() -> None:
    makefile = (REPO / "Makefile").read_text()
    for target in ("setup", "pull", "pr-report"):
        assert f"\n{target}: " in makefile
    assert "BASE ?= main" in makefile


def test_noise_rule() -> None:
    assert moved("peak_memory_mb", 100, 125) is None  # within ±25 %
    assert moved("peak_memory_mb", 100, 130) == "+30%"
    assert moved("train_samples_per_second", 10.0, 7.0) == "-30%"
    assert moved("peak_memory_mb", 0, 5) == "from 0"
    assert moved("retries", 0, 0) is None  # "0 → 0" never
    assert moved("retries", 0, 1) == "+1"  # counts: any change
    assert moved("backend", "local", "openai") == "changed"
    assert moved("cost_usd", None, 0.1) == "new"
    assert moved("rows", 5, None) == "removed"


def test_an_unknown_base_is_one_clear_error(tmp_path: Path) -> None:
    env = project_env(tmp_path)
    run_ok(["git", "init", "-q"], tmp_path, env)
    done = subprocess.run(
        [sys.executable, "-m", "hybridscore.cli", "pr-report", "--base", "no-such-branch"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "hybridscore pr-report: error:" in done.stderr and "no-such-branch" in done.stderr
