"""``hybridscore report`` on fabricated experiments (plain git refs, no training)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from report_helpers import (
    add_experiments,
    commit_stream,
    fake,
    fast_import,
    grid_fakes,
    lock,
    make_repo,
    split_scores,
)

from hybridscore.report import main

PNG = b"\x89PNG\r\n\x1a\n"


def linear(r: float, t: float, s: int) -> dict[str, float]:
    """Ratio helps, temperature 0.3 a little, seeds add a small paired offset."""
    v = 0.5 + 0.1 * r + 0.01 * s + (0.02 if t == 0.3 else 0.0)
    return {"teacher": v, "student": v - 0.05, "tfidf_lr": 0.4}


def report(root: Path, *args: str) -> str:
    main(["--repo", str(root), "--out", str(root / "reports"), *args])
    return (root / "reports" / "report.md").read_text(encoding="utf-8")


def refused(root: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exc:
        report(root, *args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_table_cells_best_mark_and_references(tmp_path: Path) -> None:
    fakes = grid_fakes([0.0, 0.8], [0.3, 0.9], [1, 2, 3], linear)
    fakes.append(
        fake(
            "int8-only",
            {"mix.synthetic_ratio": 0.8, "synthesize.temperature": 0.9, "seed": 4},
            {"teacher": 0.6, "student": 0.55, "int8": 0.5},
        )
    )
    make_repo(tmp_path, fakes)
    text = report(tmp_path)
    header = "|  | cell | n | teacher val | teacher test | student val | student test | int8 val"
    assert header in text
    assert (
        "| **best** | synthetic_ratio=0.8 temperature=0.3 | 3 | 0.620 ± 0.010 [0.595, 0.645]"
        " | 0.620 ± 0.010 [0.595, 0.645] | 0.570 ± 0.010 [0.545, 0.595]" in text
    )
    assert "| synthetic_ratio=0.8 temperature=0.9 | 4 |" in text
    assert "| 0.500 | 0.500 |" in text  # INT8: one seed, no std or interval
    assert text.count("| **best** |") == 4  # one row per metric table
    assert "human-only, teacher (`synthetic_ratio=0.0 temperature=0.3`) | all | 3" in text
    assert "TF-IDF + LR on human-only rows" in text and "0.400 ± 0.000" in text
    assert "no human–human ceiling" in text
    assert "mean ± std [95 % t-interval of the mean]" in text


def test_plots_are_pngs_with_budget_axis_and_calibration(tmp_path: Path) -> None:
    calibration = json.dumps(
        {
            "teacher": {
                "test": {
                    "ece": 0.05,
                    "bins": [
                        {"confidence": 0.4, "accuracy": 0.35, "count": 5},
                        {"confidence": 0.8, "accuracy": 0.75, "count": 9},
                    ],
                }
            }
        }
    )
    fakes = [
        fake(
            f"b{b}-r{r}-s{s}",
            {"mix.human_per_label": b, "mix.synthetic_ratio": r, "seed": s},
            linear(r, 0.3, s),
            files={"dvclive/evaluate/calibration.json": calibration},
        )
        for b in (25, None)
        for r in (0.0, 0.5)
        for s in (1, 2)
    ]
    make_repo(tmp_path, fakes)
    text = report(tmp_path)
    names = ["metric_vs_ratio", "metric_vs_budget", "seed_std_vs_temperature", "confusion"]
    for name in [*names, "calibration"]:
        assert (tmp_path / "reports" / f"{name}.png").read_bytes().startswith(PNG), name
        assert f"![{name}.png]({name}.png)" in text
    assert "Human budget 25 per label:" in text and "All human rows:" in text
    assert "experiment b25-r0.5-s1 (its first training seed)" in text


def test_partial_grid_and_missing_metrics_shown(tmp_path: Path) -> None:
    fakes = [
        f for f in grid_fakes([0.0, 0.8], [0.3, 0.9], [1, 2], linear) if "0.8-temp0.9" not in f.name
    ]
    for old in fakes[:2]:  # both seeds of ratio 0, temp 0.3: older runs, most metrics absent
        old.files["dvclive/evaluate/metrics.json"] = json.dumps({"teacher": {"val": {"qwk": 0.5}}})
    make_repo(tmp_path, fakes)
    text = report(tmp_path)
    assert "| synthetic_ratio=0.8 temperature=0.9 | 0 | missing | missing |" in text
    assert "3 of 4 grid cell(s) (1 missing)" in text
    assert (
        "| synthetic_ratio=0.0 temperature=0.3 | 2 | 0.500 ± 0.000 [0.500, 0.500] | – | – | – |"
        in text
    )
    assert "calibration curve: skipped" in text


def test_mixed_datasets_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fakes = grid_fakes([0.0, 0.8], [0.3], [1, 2], linear)
    fakes[1].overrides["data"] = {"source": "data/other.csv"}
    make_repo(tmp_path, fakes)
    err = refused(tmp_path, capsys)
    assert "different datasets" in err and "data.source" in err and "data/other.csv" in err


def test_the_input_mode_is_an_axis_not_another_dataset(tmp_path: Path) -> None:
    fakes = grid_fakes([0.0, 0.8], [0.3], [1, 2], linear)
    for f in fakes[2:]:
        f.overrides["data"] = {"input": "question+text"}
    make_repo(tmp_path, fakes)
    text = report(tmp_path)
    assert "input=question+text" in text and "different datasets" not in text


def test_stale_code_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fakes = grid_fakes([0.0, 0.8], [0.3], [1, 2], linear)
    fakes[2] = fake(
        fakes[2].name,
        {"mix.synthetic_ratio": 0.8, "seed": 1},
        linear(0.8, 0.3, 1),
        code_md5="f" * 32,
    )
    make_repo(tmp_path, fakes)
    err = refused(tmp_path, capsys)
    assert "experiments ran different code" in err and "src/hybridscore/" in err
    assert fakes[2].name in err
    # accepting one changed file is not enough: the other stages' code differs too
    err = refused(tmp_path, capsys, "--accept-code", "src/hybridscore/mix.py")
    assert "src/hybridscore/train_teacher.py" in err and "mix.py (stage" not in err
    text = report(tmp_path, "--accept-code", "src/hybridscore/")
    assert "**Code differs between these experiments** in `src/hybridscore/evaluate.py`" in text
    assert "\n4 experiment(s) in" in text


def test_stage_carried_over_from_baseline_is_not_stale(tmp_path: Path) -> None:
    """A stage an experiment did not run keeps the baseline's lock entry: not stale code."""
    fakes = grid_fakes([0.0, 0.8], [0.3], [1, 2], linear)
    fakes[0].files["dvc.lock"] = lock("a" * 32)  # as the baseline's: nothing re-run there
    make_repo(tmp_path, fakes, base_lock=lock("a" * 32))
    assert "BEATS" in report(tmp_path)


def test_no_experiments_and_unreadable_metrics_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_repo(tmp_path / "empty", [])
    assert "no experiments for baseline" in refused(tmp_path / "empty", capsys)
    fakes = grid_fakes([0.0], [0.3], [1, 2], linear)
    fakes[1].files["dvclive/evaluate/metrics.json"] = "{not json"
    make_repo(tmp_path / "bad", fakes)
    err = refused(tmp_path / "bad", capsys)
    assert fakes[1].name in err and "dvclive/evaluate/metrics.json is unreadable" in err


def conclusion_for(tmp_path: Path, score: Any, seeds: list[int]) -> str:
    make_repo(tmp_path, grid_fakes([0.0, 0.8], [0.3], seeds, score))
    text = report(tmp_path)
    return next(line for line in text.splitlines() if line.startswith("- All human rows:"))


def test_conclusion_flips_with_the_numbers(tmp_path: Path) -> None:
    noise = {1: 0.04, 2: -0.03, 3: 0.0}

    def steady(r: float, t: float, s: int) -> dict[str, float]:
        return {"teacher": 0.5 + 0.05 * (r > 0) + noise[s] * (r > 0) * 0.1 + 0.01 * s}

    def noisy(r: float, t: float, s: int) -> dict[str, float]:
        return {"teacher": 0.5 + 0.01 * (r > 0) + noise[s] * (r > 0) + 0.01 * s}

    def worse(r: float, t: float, s: int) -> dict[str, float]:
        return {"teacher": 0.6 - 0.1 * (r > 0) + 0.001 * s * (r > 0)}

    beats = conclusion_for(tmp_path / "a", steady, [1, 2, 3])
    assert "BEATS human-only beyond seed noise" in beats and "paired t-test over 3" in beats
    assert "mean paired difference +0.050" in beats
    unclear = conclusion_for(tmp_path / "b", noisy, [1, 2, 3])
    assert "does NOT beat human-only" in unclear and "BEATS" not in unclear
    # chosen on validation, so the best mix is still the only mix: worse beyond noise
    assert "is WORSE than human-only" in conclusion_for(tmp_path / "c", worse, [1, 2, 3])
    one = conclusion_for(tmp_path / "d", steady, [1])
    assert "cannot be decided, only 1 paired training seed(s)" in one


def test_one_human_only_cell_serves_every_temperature(tmp_path: Path) -> None:
    """As ``hybridscore sweep`` runs it: ratio 0 once (at 0.3), mixes at both temperatures."""
    fakes = [
        f
        for f in grid_fakes([0.0, 0.8], [0.3, 0.9], [1, 2, 3], linear)
        if "0.0-temp0.9" not in f.name
    ]
    for f in fakes:  # the sweep queues human-only cells asking for no rows
        if "ratio0.0" in f.name:
            f.overrides["synthesize"]["responses_per_label"] = 0
    make_repo(tmp_path, fakes)
    text = report(tmp_path)
    assert "synthetic_ratio=0.0 temperature=0.9" not in text  # not listed as missing
    assert "human-only, teacher (`synthetic_ratio=0.0 temperature=0.3`) | all | 3" in text
    assert "responses_per_label" not in text  # not an axis: only the human-only cells differ
    assert (tmp_path / "reports" / "metric_vs_ratio.png").read_bytes().startswith(PNG)


def test_temperatures_of_a_mix_compared_paired_over_seeds(tmp_path: Path) -> None:
    noise = {1: 0.03, 2: -0.03, 3: 0.0}

    def lines(root: Path, temps: list[float], score: Any) -> list[str]:
        make_repo(root, grid_fakes([0.0, 0.5, 0.8], temps, [1, 2, 3], score))
        return [x for x in report(root).splitlines() if "(chosen on validation) vs 0.9" in x]

    def steady(r: float, t: float, s: int) -> dict[str, float]:
        return {"teacher": 0.5 + r * (0.05 if t == 0.3 else 0.0) + 0.002 * s * (t == 0.3)}

    def noisy(r: float, t: float, s: int) -> dict[str, float]:
        return {"teacher": 0.5 + 0.01 * (t == 0.3) + noise[s] * (t == 0.9)}

    clear = lines(tmp_path / "a", [0.3, 0.9], steady)
    assert len(clear) == 2  # one per ratio > 0; human-only has no temperature to compare
    assert clear[1].startswith("- `synthetic_ratio=0.8`: temperature 0.3 (chosen on validation)")
    assert "vs 0.9: 0.3 is BETTER beyond seed noise on test teacher QWK" in clear[1]
    assert "mean paired difference +0.044" in clear[1]  # 0.8 * 0.05 + 0.002 * mean seed 2
    unclear = lines(tmp_path / "b", [0.3, 0.9], noisy)
    assert all("no difference beyond seed noise" in x for x in unclear) and len(unclear) == 2
    assert lines(tmp_path / "c", [0.3], steady) == []


def test_every_mix_is_compared_with_its_budgets_human_only_cell(tmp_path: Path) -> None:
    noise = {1: 0.03, 2: -0.03, 3: 0.0}

    def score(r: float, t: float, s: int) -> dict[str, float]:
        worse = -0.1 * (r == 0.8) + 0.001 * s * (r == 0.8)  # beyond noise
        return {"teacher": 0.6 + worse + noise[s] * (r == 0.5) + 0.02 * (t == 0.3) * (r > 0)}

    make_repo(tmp_path, grid_fakes([0.0, 0.5, 0.8], [0.3, 0.9], [1, 2, 3], score))
    text = report(tmp_path)
    section = text[text.index("## Every mix against human-only (test teacher QWK)") :]
    rows = [x for x in section[: section.index("## Cells")].splitlines() if x.startswith("| `")]
    assert len(rows) == 4  # two mixes at two temperatures; human-only is not a mix
    by_cell = {x.split(" | ")[0].strip("| `"): x for x in rows}
    worse = by_cell["synthetic_ratio=0.8 temperature=0.3"]
    assert "`synthetic_ratio=0.0 temperature=0.3` | 3 | -0.078 |" in worse
    assert worse.endswith("| worse |")
    assert by_cell["synthetic_ratio=0.5 temperature=0.9"].endswith("| no |")


def test_a_grid_run_from_two_commits_reports_as_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One temperature per commit (two sweeps): --rev twice joins them into one grid."""
    first = make_repo(tmp_path, grid_fakes([0.0, 0.8], [0.3], [1, 2, 3], linear))
    fast_import(tmp_path, commit_stream("refs/heads/main", first, {"NOTES": "later"}, 1))
    later = git_head(tmp_path)
    add_experiments(tmp_path, later, grid_fakes([0.8], [0.9], [1, 2, 3], linear, prefix="h"))
    text = report(tmp_path, "--rev", first, "--rev", "HEAD")
    assert text.startswith(f"# Sweep report: baseline {first[:7]}, {later[:7]}")
    assert "9 experiment(s) in 3 of 3 grid cell(s)" in text  # ratio 0 ran once, at 0.3
    assert "temperature 0.3 (chosen on validation) vs 0.9: 0.3 is BETTER" in text
    assert "\n3 experiment(s) in 1 of 1 grid cell(s)" in report(tmp_path)  # HEAD alone
    add_experiments(tmp_path, later, grid_fakes([0.0], [0.3], [1], linear, prefix="again"))
    with pytest.raises(SystemExit):
        report(tmp_path, "--rev", first, "--rev", "HEAD")
    err = capsys.readouterr().err
    assert "g-ratio0.0-temp0.3-seed1 and again-ratio0.0-temp0.3-seed1 ran the same params" in err


def git_head(root: Path) -> str:
    import subprocess

    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_budgets_asking_for_their_own_rows_are_one_grid(tmp_path: Path) -> None:
    """``responses_per_label: auto`` asks each budget for its own number: not an axis."""
    asked = {25: 134, 50: 267}
    fakes = [
        fake(
            f"b{b}-ratio{r}-seed{s}",
            {
                "mix.human_per_label": b,
                "mix.synthetic_ratio": r,
                "seed": s,
                "synthesize.responses_per_label": asked[b] if r else 0,
            },
            {"teacher": 0.5 + b / 1000 - 0.02 * r + 0.001 * s},
        )
        for b in (25, 50)
        for r in (0.0, 0.8)
        for s in (1, 2)
    ]
    make_repo(tmp_path, fakes)
    text = report(tmp_path)
    assert "8 experiment(s) in 4 of 4 grid cell(s). Axes: `mix.human_per_label` {25, 50}," in text
    assert "responses_per_label" not in text and "missing" not in text
    assert "Best cell at human budget 25: `human_per_label=25 synthetic_ratio=0.0`." in text
    assert "Best cell at human budget 50: `human_per_label=50 synthetic_ratio=0.0`." in text
    fakes[-1].overrides["synthesize"]["responses_per_label"] = 300  # one budget asked two ways
    make_repo(tmp_path / "two", fakes)
    assert "`synthesize.responses_per_label` {0, 134, 267, 300}" in report(tmp_path / "two")


def chain_lock(student_md5_in_export: str) -> str:
    """distill -> export -> evaluate_int8; export records the student it read."""
    stages = {
        "distill": {"cmd": "d", "outs": [{"path": "models/student", "md5": "new.dir"}]},
        "export": {
            "cmd": "e",
            "deps": [{"path": "models/student", "md5": student_md5_in_export}],
            "outs": [{"path": "models/student_onnx", "md5": "onnx.dir"}],
        },
        "evaluate_int8": {"cmd": "i", "deps": [{"path": "models/student_onnx", "md5": "onnx.dir"}]},
    }
    return yaml.safe_dump({"schema": "2.0", "stages": stages})


def test_int8_metrics_carried_over_from_the_baseline_are_not_reported(tmp_path: Path) -> None:
    """A cell queued up to `evaluate` keeps the baseline's export and INT8 entries: stale."""
    axes = {"mix.synthetic_ratio": 0.8, "synthesize.temperature": 0.3, "seed": 1}
    scores = {"teacher": 0.6, "student": 0.55, "int8": 0.9}
    ran = fake("ran", axes, scores, files={"dvc.lock": chain_lock("new.dir")})
    carried = fake(
        "carried", {**axes, "seed": 2}, scores, files={"dvc.lock": chain_lock("old.dir")}
    )
    make_repo(tmp_path, [ran, carried])
    text = report(tmp_path)
    row = next(line for line in text.splitlines() if line.startswith("| **best** | (all) | 2 |"))
    assert row.endswith("| 0.900 | 0.900 |")  # the INT8 columns: one seed's value, not two
    assert "0.900 ± 0.000" not in text


def test_a_fixed_budget_is_named_and_a_validation_only_second_rater_is_the_ceiling(
    tmp_path: Path,
) -> None:
    """ASAP-SAS as the paper's grid runs it at one budget: ``mix.human_per_label`` is the same
    in every experiment (not an axis), and only the validation rows have a second rating."""
    fakes = []
    for r in (0.0, 0.5):
        for s in (1, 2):
            scores = linear(r, 0.3, s)
            metrics = {role: split_scores(v) for role, v in scores.items()}
            metrics["human_rater2"] = {"val": split_scores(0.945)["val"]}
            fakes.append(
                fake(
                    f"r{r}-s{s}",
                    {"mix.human_per_label": 25, "mix.synthetic_ratio": r, "seed": s},
                    scores,
                    files={"dvclive/evaluate/metrics.json": json.dumps(metrics)},
                )
            )
    make_repo(tmp_path, fakes)
    text = report(tmp_path)
    assert "- Human budget 25 per label:" in text and "All human rows" not in text
    assert "human-only, teacher (`synthetic_ratio=0.0`) | 25 | 2" in text
    assert "| human–human ceiling (rater 2 vs rater 1) | – | 4 | 0.945 ± 0.000" in text
    assert "no human–human ceiling" not in text


def test_a_model_that_predicts_one_class_is_named_in_its_cell(tmp_path: Path) -> None:
    fakes = grid_fakes([0.0, 0.8], [0.3], [1, 2], linear)
    for one in fakes[2:]:  # ratio 0.8, both seeds: the student predicts one label on test
        metrics = json.loads(one.files["dvclive/evaluate/metrics.json"])
        for role, split, count in (("student", "test", 1), ("teacher", "test", 3)):
            metrics[role][split]["predicted_labels"] = count
        one.files["dvclive/evaluate/metrics.json"] = json.dumps(metrics)
    make_repo(tmp_path, fakes)
    text = report(tmp_path)
    header = next(line for line in text.splitlines() if line.startswith("|  | cell |"))
    row = next(line for line in text.splitlines() if "| synthetic_ratio=0.8 " in line)
    named = dict(zip(header.split("|"), row.split("|"), strict=True))
    named = {column.strip(): value for column, value in named.items()}
    flagged = [column for column, value in named.items() if "one class" in value]
    assert flagged == ["student test"] and "(one class in 2 of 2)" in named["student test"]
    assert "one class" not in text.split("| synthetic_ratio=0.8 ")[0]  # not the human cells
