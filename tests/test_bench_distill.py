"""The distillation benchmark: its params per set and its table (the runs are benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import bench_distill

    return bench_distill


def student(name: str, seed: int, teacher: float, student: float, int8: float) -> dict:
    metrics = {
        "teacher": {"test": {"qwk": teacher}},
        "student": {"test": {"qwk": student}},
        "int8": {"test": {"qwk": int8}},
        "tfidf_lr": {"test": {"qwk": 0.6}},
    }
    return {"set": name, "fixed": "", "kind": "student", "seed": seed, "metrics": metrics}


def speed(name: str, teacher: float, int8: float) -> dict:
    models = {"teacher": {"throughput_b": teacher}, "student-onnx-int8": {"throughput_b": int8}}
    return {"set": name, "fixed": "", "kind": "speed", "seed": None, "models": models}


def rows(bench, records: list[dict]) -> dict[str, str]:
    return {line.split(" | ")[0].strip("| "): line for line in bench.table(records).splitlines()}


def test_table_keeps_the_mean_ratio_and_decides_the_goal_on_both_parts(bench) -> None:
    met = [student("asap1", s, 0.80, 0.79, q) for s, q in ((42, 0.79), (1, 0.80))]
    slow = [student("asap5", 42, 0.80, 0.79, 0.79)]
    worse = [student("asap6", s, 0.80, 0.70, q) for s, q in ((42, 0.70), (1, 0.74))]
    records = [*met, speed("asap1", 3.0, 100.0), *slow, speed("asap5", 3.0, 60.0), *worse]
    records.append(speed("asap6", 3.0, 100.0))
    table = rows(bench, records)
    assert "0.994 ± 0.009" in table["asap1"]  # INT8 / teacher: 0.9875 and 1.0
    assert "33.3×" in table["asap1"] and table["asap1"].endswith("| met |")
    assert "20.0×" in table["asap5"] and "⚠ not met" in table["asap5"]  # fast enough: no
    assert "0.900 ± 0.035" in table["asap6"] and "⚠ not met" in table["asap6"]  # QWK: no


def test_table_leaves_a_set_without_its_speed_or_students_undecided(bench) -> None:
    failed = {"set": "asap2", "fixed": "", "kind": "student", "seed": None}
    failed |= {"failed": "train_teacher", "message": "collapsed"}
    table = rows(bench, [student("asap1", 42, 0.8, 0.8, 0.8), failed])
    assert "not decided" in table["asap1"]
    assert "not decided (failed: teacher: train_teacher)" in table["asap2"]


def test_table_keeps_students_of_other_defaults_apart(bench) -> None:
    old = [student("asap1", s, 0.80, 0.79, 0.79) for s in (42, 1)]
    new = [student("asap1", s, 0.80, 0.79, q) for s, q in ((42, 0.70), (1, 0.79))]
    for record in new:
        record["params"] = {"distill": {"epochs": 40, "seed": record["seed"]}}
    lines = bench.table([*old, *new]).splitlines()
    assert any(
        "defaults [params not recorded]" in line and "0.988 ± 0.000" in line for line in lines
    )
    tag = f"defaults [params {bench.params_id(new[0]['params'])}]"
    mixed = [line for line in lines if tag in line]
    assert len(mixed) == 1 and "0.931 ± 0.080" in mixed[0]  # both seeds: one version


def test_teacher_params_are_human_rows_unless_the_student_distils_on_synthetic_rows(
    bench, tmp_path: Path
) -> None:
    params = bench.set_params("asap1", tmp_path, [])
    assert params["mix"]["synthetic_ratio"] == 0.0
    assert params["synthesize"]["responses_per_label"] == 0
    assert params["data"]["source"] == f"asap-sas:{tmp_path}/asap-sas/set1"
    lever = ["distill.transfer_unused_synthetic=true", "synthesize.responses_per_label=500"]
    params = bench.set_params("asap1", tmp_path, lever)
    assert params["mix"]["synthetic_ratio"] == 0.0
    assert params["synthesize"]["responses_per_label"] == 500
    assert bench.set_folders(tmp_path, "asap1", []) == (tmp_path / "asap1", "")
    root, suffix = bench.set_folders(tmp_path, "asap1", lever)
    assert root.name.startswith("asap1-") and suffix == ""  # the lever changes the teacher side


def test_a_student_only_override_reuses_the_teacher(bench, tmp_path: Path) -> None:
    teacher = ["train_teacher.learning_rate=3e-5"]
    root, suffix = bench.set_folders(tmp_path, "asap5", teacher)
    assert suffix == ""
    same_teacher, layers = bench.set_folders(tmp_path, "asap5", [*teacher, "distill.num_layers=2"])
    assert same_teacher == root and layers.startswith("-")


def test_a_kept_teacher_trained_with_other_params_is_refused(
    bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = bench.set_params("sample", tmp_path, [])
    folder = tmp_path / "work/sample/teacher"
    bench.new_cell(folder, params)
    (folder / "teacher.json").write_text("{}\n")
    assert bench.train_teacher(folder, params, {}) is None  # kept: nothing runs
    student_only = bench.with_dotted(params, {"distill.epochs": 40})
    assert bench.train_teacher(folder, student_only, {}) is None
    epochs = params["train_teacher"]["epochs"]
    bench.new_cell(folder, bench.with_dotted(params, {"train_teacher.epochs": epochs + 1}))
    (folder / "teacher.json").write_text("{}\n")
    out = tmp_path / "distill.jsonl"
    argv = ["--sets", "sample", "--work", str(tmp_path / "work"), "--out", str(out)]
    assert bench.main([*argv, "--datasets", str(tmp_path / "none")]) == 2
    assert "(train_teacher.epochs; params.yaml changed since?)" in capsys.readouterr().err
    assert not out.exists() or not out.read_text()  # no record of a run that did not happen


def fake_stage(write: dict[str, str]) -> str:
    """A stage command that writes ``write`` (path: text) in its folder."""
    import shlex
    import sys

    code = "import pathlib, sys\nfor p, t in zip(sys.argv[1::2], sys.argv[2::2]):\n"
    code += "    f = pathlib.Path(p); f.parent.mkdir(parents=True, exist_ok=True)\n"
    code += "    f.write_text(f.read_text() + t if f.exists() else t)\n"
    return shlex.join([sys.executable, "-c", code, *[x for kv in write.items() for x in kv]])


def test_a_teacher_trained_from_the_same_inputs_is_copied_not_trained_again(
    bench, tmp_path: Path
) -> None:
    trained = tmp_path / "trainings.txt"
    commands = {
        "prepare": fake_stage({"data/prepared/train.csv": "a", "data/prepared/val.csv": "v"}),
        "synthesize": fake_stage({"data/llm_cache/replies/new.jsonl": "r"}),
        "mix": fake_stage({"data/mixed/train.csv": "a"}),
        "train_teacher": fake_stage(
            {str(trained): "x", "models/teacher/w": "w", "metrics/train_teacher.json": "{}"}
        ),
        "teacher_logits": fake_stage({"data/distill/teacher_logits.csv": "l"}),
    }
    params = bench.set_params("sample", tmp_path, [])
    assert bench.train_teacher(tmp_path / "sample/teacher", params, commands) is None
    transfer = bench.with_dotted(params, {"distill.transfer_unused_synthetic": True})
    folder = tmp_path / "sample-1a2b/teacher"
    assert bench.train_teacher(folder, transfer, commands) is None
    assert trained.read_text() == "x"  # one training: the second folder copied the teacher
    assert (folder / "models/teacher/w").read_text() == "w"
    assert (folder / "data/distill/teacher_logits.csv").is_file()
    report = json.loads((folder / "teacher.json").read_text())
    assert report["train_teacher_reused"].startswith("train_teacher-")
    assert report["llm_cache_shards_shared"] == 1  # the first folder's reply shard
    (tmp_path / "sample/teacher/data/llm_cache/replies/old.jsonl").write_text("o")
    longer = bench.with_dotted(params, {"train_teacher.epochs": 9})
    other = tmp_path / "sample-3c4d/teacher"
    assert bench.train_teacher(other, longer, commands) is None
    assert trained.read_text() == "xx"  # other params: trained
    assert (other / "data/llm_cache/replies/old.jsonl").read_text() == "o"
    report = json.loads((other / "teacher.json").read_text())
    assert "train_teacher_reused" not in report and report["llm_cache_shards_shared"] == 2
    elsewhere = bench.with_dotted(params, {"data.source": str(tmp_path / "other.csv")})
    other_rows = {**commands, "mix": fake_stage({"data/mixed/train.csv": "b"})}
    assert bench.train_teacher(tmp_path / "other/teacher", elsewhere, other_rows) is None
    assert trained.read_text() == "xxx"  # another data set: trained, no foreign shard
    report = json.loads((tmp_path / "other/teacher/teacher.json").read_text())
    assert report["llm_cache_shards_shared"] == 0
