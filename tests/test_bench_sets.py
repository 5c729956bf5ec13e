"""The public-data benchmark: its cell params and its table (the runs themselves are benchmarks)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import bench_sets

    return bench_sets


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import machine

    return machine


def record(bench, name: str, seed: int, teacher: float, tfidf: float, **extra) -> dict:
    metrics = {
        "teacher": {"val": {"qwk": teacher}, "test": {"qwk": teacher}},
        "tfidf_lr": {"test": {"qwk": tfidf}},
    }
    return {
        "set": name,
        "point": "defaults",
        "seed": seed,
        "models": ["teacher"],
        "metrics": metrics,
        **extra,
    }


def test_table_means_seeds_and_flags_a_set_below_the_margin_goal(bench) -> None:
    records = [
        record(bench, "asap1", 1, 0.90, 0.70),
        record(bench, "asap1", 2, 0.80, 0.70),
        record(bench, "asap2", 1, 0.60, 0.59),
        {
            "set": "asap2",
            "point": "defaults",
            "seed": 2,
            "failed": "train_teacher",
            "message": "train_teacher collapsed",
            "models": ["teacher"],
        },
    ]
    rows = {line.split(" | ")[0].strip("| "): line for line in bench.table(records).splitlines()}
    assert "0.850 ± 0.071" in rows["asap1"]  # mean ± sample std of 0.90 and 0.80
    assert "below goal" not in rows["asap1"]  # margin 0.15 ≥ 0.08
    assert "below goal" in rows["asap2"]  # margin 0.01
    assert "2: train_teacher (train_teacher collapsed)" in rows["asap2"]
    records[0]["metrics"]["teacher"]["test"]["predicted_labels"] = 1
    records[1]["metrics"]["teacher"]["test"]["predicted_labels"] = 3
    rows = {line.split(" | ")[0].strip("| "): line for line in bench.table(records).splitlines()}
    assert rows["asap1"].endswith("| 1: teacher one class |")


def test_table_keeps_runs_with_different_fixed_overrides_apart(bench) -> None:
    plain = record(bench, "asap6", 1, 0.60, 0.65, fixed="")
    longer = record(bench, "asap6", 1, 0.80, 0.65, fixed="train_teacher.epochs=8")
    rows = bench.table([plain, longer]).splitlines()[2:4]
    assert any("| defaults [params not recorded] |" in row and "0.600" in row for row in rows)
    assert any("defaults (train_teacher.epochs=8)" in row and "0.800" in row for row in rows)
    assert "0.700" not in bench.table([plain, longer])  # never their mean


def test_table_marks_and_keeps_apart_runs_with_other_defaults(bench) -> None:
    import yaml

    defaults = yaml.safe_load((REPO / "params.yaml").read_text())
    today = bench.cell_params(defaults, bench.SETS["asap6"], {}, 1)
    current = record(bench, "asap6", 1, 0.60, 0.65, fixed="", params=today)
    moved = bench.with_dotted(today, {"seed": 2, "data.source": "/b/set6"})  # not a version
    again = record(bench, "asap6", 2, 0.70, 0.65, fixed="", params=moved)
    assert "| defaults | 0.650 ± 0.071 |" in bench.table([current, again])
    epochs = today["train_teacher"]["epochs"]
    half = bench.with_dotted(today, {"train_teacher.epochs": epochs // 2})  # changed since
    slow = bench.with_dotted(half, {"train_teacher.learning_rate": 1e-6})
    older = [
        record(bench, "asap6", 1, q, 0.65, fixed="", params=p)
        for q, p in ((0.8, half), (0.5, slow))
    ]
    table = bench.table([current, *older])
    assert "| defaults | 0.600 |" in table
    assert f"| defaults [older defaults] [params {bench.params_id(half)}] | 0.800" in table
    assert f"| defaults [older defaults] [params {bench.params_id(slow)}] | 0.500" in table
    unknown = record(bench, "asap6", 1, 0.50, 0.65, fixed="")  # before records kept params
    assert "| defaults [params not recorded] | 0.500" in bench.table([current, unknown])
    point = {"train_teacher.learning_rate": "8e-5"}  # a grid value, as older records kept it
    given = bench.cell_params(defaults, bench.SETS["asap6"], point, 1)
    cell = record(bench, "asap6", 1, 0.7, 0.65, fixed="", params=given)
    assert "| train_teacher.learning_rate=8e-5 | 0.700" in bench.table(
        [cell | {"point": "train_teacher.learning_rate=8e-5"}]
    )


def test_a_rerun_skips_only_the_cells_finished_with_todays_params(
    bench, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import argparse

    ran: list[int] = []

    def run_cell(folder: Path, params: dict, models: list[str], commands: dict, store) -> dict:
        ran.append(params["train_teacher"]["epochs"])
        return {"seconds": {}}

    monkeypatch.setattr(bench, "run_cell", run_cell)
    args = argparse.Namespace(
        datasets=tmp_path, sets=["sample"], seeds=[42], grid=["train_teacher.epochs=4,8"],
        overrides=[], models=["teacher"], work=tmp_path / "work", out=tmp_path / "out.jsonl",
        jobs=1, discard_models=False, reuse_models=True,
    )  # fmt: skip
    records = bench.run_grid(args, [])
    assert sorted(ran) == [4, 8] and len(args.out.read_text().splitlines()) == 2
    ran.clear()
    assert bench.run_grid(args, records) == [] and ran == []  # all done
    other = {"train_teacher.learning_rate": 1.0}  # params.yaml's defaults changed since
    changed = [r | {"params": bench.with_dotted(r["params"], other)} for r in records]
    unknown = [{k: v for k, v in r.items() if k != "params"} for r in records]
    for earlier in (changed, unknown):
        ran.clear()
        bench.run_grid(args, earlier)
        assert sorted(ran) == [4, 8]


def test_an_override_with_spaces_is_recorded_so_the_table_reads_it_back(
    bench, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import argparse

    monkeypatch.setattr(bench, "run_cell", lambda *a: {"seconds": {}})
    spaced = "synthesize.prompt_template=my prompts/examples.txt"
    args = argparse.Namespace(
        datasets=tmp_path, sets=["sample"], seeds=[42], grid=[], overrides=[spaced],
        models=["teacher"], work=tmp_path / "work", out=tmp_path / "out.jsonl", jobs=1,
        discard_models=False, reuse_models=False,
    )  # fmt: skip
    [record] = bench.run_grid(args, [])
    assert record["fixed"] == f"'{spaced}'"
    record["metrics"] = {
        "teacher": {"val": {"qwk": 0.5}, "test": {"qwk": 0.5}},
        "tfidf_lr": {"test": {"qwk": 0.4}},
    }
    assert "[older defaults]" not in bench.table([record])  # today's params, read back whole


def test_exponent_floats_read_as_dvc_reads_them_and_name_one_params_version(bench) -> None:
    assert bench.parse_overrides(["train_teacher.learning_rate=3e-5"]) == {
        "train_teacher.learning_rate": 3e-5
    }
    assert [bench.parse_value(v) for v in ("1E3", "-2.5e-1", "8", "1e3x", "null")] == [
        1000.0, -0.25, 8, "1e3x", None,
    ]  # fmt: skip
    default = {"train_teacher": {"learning_rate": 8e-5}, "model": "e5-base"}
    written_as_text = {"train_teacher": {"learning_rate": "8e-5"}, "model": "e5-base"}
    assert bench.params_id(written_as_text) == bench.params_id(default)  # an older record
    assert bench.params_id(bench.with_dotted(default, {"model": "e6"})) != bench.params_id(default)


def test_table_averages_the_asap_sets_and_decides_the_mean_goal_only_on_all_four(bench) -> None:
    three = [record(bench, f"asap{n}", 1, 0.9, 0.7) for n in (1, 2, 5)]
    assert "3 of 4 sets ran: goal not decided" in bench.table(three)
    four = [*three, record(bench, "asap6", 1, 0.5, 0.4), record(bench, "asap6", 2, 0.7, 0.4)]
    summary = bench.table(four).splitlines()[-1]
    assert "0.825 over asap1, asap2, asap5, asap6" in summary  # (0.9 * 3 + 0.6) / 4
    assert "goal met" in summary
    low = [*four, record(bench, "asap1", 2, 0.3, 0.7)]  # set 1 now 0.6: mean 0.75
    assert "0.750" in bench.table(low).splitlines()[-1]
    assert "below goal" in bench.table(low).splitlines()[-1]
    assert "ASAP-SAS mean" not in bench.table([record(bench, "scientsbank-ua", 1, 0.5, 0.4)])
    collapsed = {"set": "asap2", "point": "defaults", "seed": 1, "failed": "train_teacher"}
    collapsed |= {"message": "train_teacher collapsed", "models": ["teacher"]}
    summary = bench.table([*three[::2], collapsed]).splitlines()[-1]  # sets 1, 5; 2 failed
    assert "0.900 over asap1, asap5 (" in summary
    assert "below goal: no cell of asap2 finished" in summary


def test_overrides_nest_and_merge_without_dropping_siblings(bench) -> None:
    base = {"data": {"source": "x.csv", "encoding": "utf-8"}, "seed": 42}
    merged = bench.merge(base, bench.nested("data.source", "asap-sas:/d/set1"))
    assert merged == {"data": {"source": "asap-sas:/d/set1", "encoding": "utf-8"}, "seed": 42}
    assert base["data"]["source"] == "x.csv"


def test_every_set_reads_a_built_in_source(bench) -> None:
    for name, params in bench.SETS.items():
        if name == "sample":  # the embedded CSV, by absolute path (cells run elsewhere)
            assert Path(params["data"]["source"]).is_file()
            continue
        prefix = "asap-sas:" if name.startswith("asap") else "semeval2013:"
        assert params["data"]["source"].startswith(prefix)
        assert params["data"]["source"].endswith(params["data"]["path"])


def test_every_cell_is_audited_for_leakage_on_all_its_training_tables(bench) -> None:
    command = bench.evaluate_command(["teacher"])
    for flag in ("--train", "--synthetic", "--transfer"):
        assert flag in command.split()


def test_a_sweep_benchmark_can_replace_one_axis_of_a_grid(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    import yaml

    from benchmarks import bench_sweep

    replaced = bench_sweep.grid_axes("configs/grids/budget.yaml", ["seed=7", "mix.total_rows=10"])
    grid = yaml.safe_load(replaced["configs/grids/budget.yaml"])
    assert grid["axes"]["seed"] == [7]
    assert grid["axes"]["mix.total_rows"] == [10]
    assert grid["axes"]["mix.human_per_label"] == [25, 50, 100]
    assert bench_sweep.grid_axes("configs/grids/budget.yaml", []) == {}


def test_a_sweep_benchmark_counts_a_generations_re_asks_once_and_a_repaid_one_again(
    monkeypatch,
) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import bench_sweep

    def cell(ratio: float, temperature: float, sent: int, **extra: object) -> tuple[dict, dict]:
        mix = {"human_per_label": 25, "synthetic_ratio": ratio}
        report = {"requests_planned": 10, "requests_sent": sent, **extra}
        return {"synthesize": {"temperature": temperature}, "mix": mix}, report

    human_only = cell(0, 0.3, 0, skipped="human-only")
    # the generating cell re-asks 2 rejected requests; its twin sends nothing: nothing repaid
    paid_once = [human_only, cell(0.5, 0.3, 12), cell(0.8, 0.3, 0), cell(0.8, 0.8, 10)]
    assert bench_sweep.request_counts(paid_once) == (20, 22, 22)
    # a later cell of the same generation sends its 2 re-asks again: repaid, ratio above 1
    assert bench_sweep.request_counts([*paid_once, cell(0.5, 0.3, 2)]) == (20, 24, 22)


def test_a_cell_keeps_its_teachers_epochs_also_when_it_failed(bench, tmp_path: Path) -> None:
    metrics = tmp_path / "dvclive/train_teacher/plots/metrics"
    (metrics / "train").mkdir(parents=True)
    (metrics / "val").mkdir()
    (metrics / "train/loss.tsv").write_text("step\tloss\n0\t0.80\n1\t0.86\n")
    (metrics / "val/qwk.tsv").write_text("step\tqwk\n0\t0.0\n1\t0.0\n")
    assert bench.epoch_history(tmp_path) == [
        {"train/loss": 0.80, "val/qwk": 0.0},
        {"train/loss": 0.86, "val/qwk": 0.0},
    ]
    assert bench.epoch_history(tmp_path / "no-run") == []


def test_the_gpu_is_named_by_nvidia_smi_without_a_cuda_context(
    machine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text('#!/bin/sh\n[ "$1" = "--query-gpu=name" ] && echo "NVIDIA H200"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert machine.gpu_names() == ["NVIDIA H200"]
    fake.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert machine.gpu_names() == []
    monkeypatch.setenv("PATH", "/nonexistent")
    assert machine.gpu_names() == []


def test_only_the_sample_runs_without_the_public_data_sets(bench, tmp_path: Path) -> None:
    import argparse

    ran: list[list[str]] = []

    def run(args: argparse.Namespace, records: list[dict]) -> list[dict]:
        ran.append(args.sets)
        return []

    for sets in (["sample"], ["asap1", "sample"]):
        args = argparse.Namespace(
            out=tmp_path / "out.jsonl", table=False, datasets=tmp_path / "absent", sets=sets
        )
        assert bench.run_then_table(args, run, lambda records: "") == 0
    assert ran == [["sample"]]  # the public sets' run was skipped


def test_the_machine_line_names_the_cpu_speed_flags(
    machine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Some CPU\nflags\t\t: fpu avx512_vnni sse4_2 avx2 avx512f\n")
    assert machine.cpu_features(cpuinfo) == ["avx2", "avx512f", "avx512_vnni"]
    assert machine.cpu_features(tmp_path / "absent") == []
    monkeypatch.setattr(machine, "cpu_features", lambda: ["avx2"])
    assert machine.cpu_summary().endswith(" cores (avx2)")
    monkeypatch.setattr(machine, "cpu_features", lambda: [])
    assert machine.cpu_summary().endswith(" cores (no AVX2)")


TEACHER_STAGE = {
    "cmd": "python -m hybridscore.train_teacher --train data/train.csv",
    "deps": ["data/train.csv", "src/hybridscore/params.py"],
    "params": ["seed", "train_teacher"],
    "outs": ["models/teacher", {"metrics/train_teacher.json": {"cache": False}}],
    "plots": [{"dvclive/train_teacher/plots/metrics": {"x": "step"}}],
}


def teacher_cell(bench, folder: Path, train: str, params: dict) -> Path:
    bench.new_cell(folder, params)
    (folder / "data").mkdir()
    (folder / "data/train.csv").write_text(train)
    return folder


def test_a_teachers_key_is_its_commands_deps_and_params_and_nothing_else(
    bench, tmp_path: Path
) -> None:
    params = {"seed": 1, "data": {"test_split": "unseen-answers"}, "train_teacher": {"lr": 1}}
    first = teacher_cell(bench, tmp_path / "a", "text,label\nx,1\n", params)
    key = bench.stage_key(first, TEACHER_STAGE, params)
    other_split = bench.with_dotted(params, {"data.test_split": "unseen-questions"})
    second = teacher_cell(bench, tmp_path / "b", "text,label\nx,1\n", other_split)
    assert bench.stage_key(second, TEACHER_STAGE, other_split) == key  # test is no input
    (second / "data/train.csv").write_text("text,label\nx,2\n")
    assert bench.stage_key(second, TEACHER_STAGE, other_split) != key
    for change in ({"seed": 2}, {"train_teacher.lr": 2}):
        assert bench.stage_key(first, TEACHER_STAGE, bench.with_dotted(params, change)) != key
    other_command = TEACHER_STAGE | {"cmd": TEACHER_STAGE["cmd"] + " --epochs 1"}
    assert bench.stage_key(first, other_command, params) != key


def test_a_cell_with_an_earlier_cells_teacher_inputs_takes_its_teacher_untrained(
    bench, tmp_path: Path
) -> None:
    import sys

    counter = tmp_path / "trained"
    write = (
        "import pathlib; pathlib.Path('models/teacher').mkdir(parents=True); "
        "pathlib.Path('models/teacher/model.safetensors').write_text('weights'); "
        "pathlib.Path('metrics').mkdir(); "
        "pathlib.Path('metrics/train_teacher.json').write_text('{}'); "
        f"open({str(counter)!r}, 'a').write('x')"
    )
    step = ("train_teacher", f'{sys.executable} -c "{write}"')
    store = bench.StageStore(tmp_path / "outputs", {"train_teacher": TEACHER_STAGE})
    params = {"seed": 1, "train_teacher": {"lr": 1}}
    cells = [teacher_cell(bench, tmp_path / f"c{i}", "text,label\nx,1\n", params) for i in (1, 2)]
    _, failure, reused = store.run(cells[0], params, step)
    assert failure is None and reused is None and counter.read_text() == "x"
    seconds, failure, reused = store.run(cells[1], params, step)
    assert failure is None and seconds == {"train_teacher": 0.0} and reused
    assert counter.read_text() == "x"  # not trained again
    assert (cells[1] / "models/teacher/model.safetensors").read_text() == "weights"
    assert (cells[1] / "metrics/train_teacher.json").is_file()
    other = teacher_cell(bench, tmp_path / "cell3", "text,label\ny,1\n", params)
    assert store.run(other, params, step)[2] is None and counter.read_text() == "xx"
    failing = teacher_cell(bench, tmp_path / "cell4", "text,label\nz,1\n", params)
    assert store.run(failing, params, ("train_teacher", "false"))[1]["failed"] == "train_teacher"
    assert not list(store.root.glob("*.partial")) and len(list(store.root.iterdir())) == 2


def test_a_new_cell_keeps_the_llm_replies_of_a_killed_run_and_nothing_else(
    bench, tmp_path: Path
) -> None:
    folder = tmp_path / "asap1-0"
    bench.new_cell(folder, {"seed": 1})
    shard = folder / bench.REPLIES / "0-123-ab.jsonl"
    shard.parent.mkdir(parents=True)
    shard.write_text('{"key": "k"}\n')
    (folder / "data/prepared").mkdir(parents=True)
    (folder / "data/prepared/train.csv").write_text("text,label\n")
    bench.new_cell(folder, {"seed": 2})
    assert shard.read_text() == '{"key": "k"}\n'  # the generation is not paid twice
    assert not (folder / "data/prepared").exists()
    assert "seed: 2" in (folder / "params.yaml").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["asap1-0"]


def test_a_new_cell_leaves_the_replies_it_reaches_through_a_link_where_they_are(
    bench, tmp_path: Path
) -> None:
    teacher = tmp_path / "teacher"
    shard = teacher / bench.REPLIES / "0-123-ab.jsonl"
    shard.parent.mkdir(parents=True)
    shard.write_text('{"key": "k"}\n')
    student = tmp_path / "student-2"
    bench.new_cell(student, {"seed": 1})
    (student / "data").symlink_to(teacher / "data")  # as bench_distill links a student's data
    bench.new_cell(student, {"seed": 2})  # a killed student started again
    assert shard.read_text() == '{"key": "k"}\n'
    assert sorted(p.name for p in student.iterdir()) == ["params.yaml", "src"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student-2", "teacher"]
