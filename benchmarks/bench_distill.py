"""Distillation on the public sets (benchmark 3 of issue #22): per set, one teacher trained on
the human training rows and students of several seeds distilled from it, each exported to the
ONNX INT8 scorer; the test QWK they keep (student / teacher and INT8 / teacher, mean over the
student seeds) and the CPU throughput (INT8 scorer / teacher: one ``bench_scorer`` run per set)
against the goal, INT8 at >= 30x the teacher's throughput with >= 0.98 of its test QWK.

    python -m benchmarks.bench_distill --sets asap1 asap5 --student-seeds 42 1 2
    python -m benchmarks.bench_distill --sets asap1 -S distill.transfer_unused_synthetic=true \\
        -S synthesize.responses_per_label=500      # the teacher labels synthetic transfer text
    python -m benchmarks.bench_distill --table

Under ``--work``, ``<set>/teacher`` runs prepare ... teacher_logits once per set and teacher-side
``-S`` overrides (a student-only ``-S distill.*`` reuses the teacher; a kept teacher whose
params differ from today's, params.yaml having changed, is refused with the keys; a new one
starts with the set's other LLM reply shards, and takes a teacher trained on the same code,
data and params from ``--work``'s stage store (``bench_sets.StageStore``), so a transfer switch
pays only for its generation and logits), and
``<set>/student-<seed>`` runs distill, export and evaluate (teacher, student, INT8 scorer and
TF-IDF + LR on the same test rows) on links to the teacher folder's data and model. Each
result is appended to ``--out`` (JSON lines) with its params when it is done, so a rerun does
only what is missing at today's params; a failed stage is recorded with its message.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import yaml

from benchmarks.bench_sets import (
    REPLIES,
    REPO,
    SETS,
    SHARED,
    StageStore,
    dvc_stages,
    evaluate_command,
    mean_std,
    merge,
    new_cell,
    params_id,
    parse_overrides,
    public_sets,
    run_steps,
    run_then_table,
    split_versions,
    stage_commands,
    version,
    with_dotted,
)
from benchmarks.machine import machine_summary
from hybridscore.report import flatten
from hybridscore.sweep import human_only

GOAL_SPEEDUP = 30.0  # INT8 scorer vs teacher, texts per second at batch 32 (issue #22)
GOAL_KEPT = 0.98  # INT8 scorer's test QWK / the teacher's, mean over the student seeds
TRANSFER_KEYS = ("distill.transfer_unused_human=", "distill.transfer_unused_synthetic=")
TEACHER_STAGES = ["prepare", "synthesize", "mix", "train_teacher", "teacher_logits"]
STUDENT_STAGES = ["distill", "export"]


def set_params(name: str, datasets: Path, overrides: list[str]) -> dict:
    """params.yaml for one set's teacher: human rows only (synthetic ones only as transfer
    text when ``distill.transfer_unused_synthetic``), plus the ``-S`` overrides."""
    params = merge(yaml.safe_load((REPO / "params.yaml").read_text()), public_sets(datasets)[name])
    params = with_dotted(params, parse_overrides(overrides))
    transfer = params["distill"]["transfer_unused_synthetic"]
    return with_dotted(params, human_only({"mix.synthetic_ratio": 0.0}, transfer))


def short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def teacher_side(overrides: list[str]) -> list[str]:
    """The overrides that change the teacher or its logits: all but the student's own
    ``distill.*`` (``teacher_logits`` reads the two transfer switches)."""
    return [o for o in overrides if not o.startswith("distill.") or o.startswith(TRANSFER_KEYS)]


def set_folders(work: Path, name: str, overrides: list[str]) -> tuple[Path, str]:
    """The set's folder, one per teacher (``<set>``, or ``<set>-<hash>`` with teacher-side
    overrides), and the suffix of its student folders (``-<hash>`` of the student-only ones)."""
    side = teacher_side(overrides)
    teacher = " ".join(side)
    student = " ".join(o for o in overrides if o not in side)
    root = work / (name + (f"-{short_hash(teacher)}" if teacher else ""))
    return root, (f"-{short_hash(student)}" if student else "")


class StaleTeacher(Exception):
    """A kept teacher folder whose params are not the ones this run would train it with."""


def stale_keys(kept: dict, wanted: dict) -> list[str]:
    """The dotted keys where a kept teacher's params differ from ``wanted`` in what the teacher
    and its logits read (every section but the student's own ``distill`` keys)."""
    old, new = flatten(kept), flatten(wanted)
    return sorted(
        key
        for key in old.keys() | new.keys()
        if old.get(key) != new.get(key)
        and (not key.startswith("distill.") or f"{key}=" in TRANSFER_KEYS)
    )


def siblings(folder: Path) -> list[Path]:
    """The other finished teacher folders of the same data set under the same work folder."""

    def source(teacher: Path) -> str:
        return yaml.safe_load((teacher / "params.yaml").read_text())["data"]["source"]

    own = source(folder)
    found = folder.parent.parent.glob("*/teacher/teacher.json")
    return sorted(f.parent for f in found if f.parent != folder and source(f.parent) == own)


def share_llm_cache(folder: Path, others: list[Path]) -> int:
    """Copy the reply shards of ``others`` (the set's other teacher folders) into ``folder``'s
    LLM cache (a larger generation re-asks none of the requests a smaller one answered);
    their count."""
    replies = folder / REPLIES
    copied = 0
    for other in others:
        for shard in sorted((other / REPLIES).glob("*.jsonl")):
            if not (replies / shard.name).exists():
                replies.mkdir(parents=True, exist_ok=True)
                shutil.copy2(shard, replies / shard.name)
                copied += 1
    return copied


def train_teacher(folder: Path, params: dict, commands: dict[str, str]) -> dict | None:
    """The teacher and its logits in ``folder`` (kept from an earlier run when complete, and
    then refused with :class:`StaleTeacher` if its params differ); the failure, or None.

    A new folder starts with the reply shards of the set's other teacher folders, and takes a
    teacher trained on the same code, data and params (a transfer switch changes the logits,
    not the teacher) from the work folder's stage store instead of training it again."""
    done = folder / "teacher.json"
    if done.is_file():
        changed = stale_keys(yaml.safe_load((folder / "params.yaml").read_text()), params)
        if not changed:
            return None
        raise StaleTeacher(
            f"{folder} holds a teacher trained with other params ({', '.join(changed)}; "
            "params.yaml changed since?): remove that folder, or give --work another one"
        )
    new_cell(folder, params)
    others = siblings(folder)
    report: dict[str, object] = {"llm_cache_shards_shared": share_llm_cache(folder, others)}
    at = TEACHER_STAGES.index("train_teacher")
    seconds, failure = run_steps(folder, [(s, commands[s]) for s in TEACHER_STAGES[:at]])
    if failure:
        return {**failure, "seconds": seconds}
    store = StageStore(folder.parent.parent / "stage-outputs", dvc_stages())
    more, failure, reused = store.run(folder, params, ("train_teacher", commands["train_teacher"]))
    seconds |= more
    if reused is not None:
        report["train_teacher_reused"] = reused
        print(f"  teacher reused: {reused} (same train_teacher inputs)", flush=True)
    if failure is None:
        rest = TEACHER_STAGES[at + 1 :]
        more, failure = run_steps(folder, [(s, commands[s]) for s in rest])
        seconds |= more
    if failure:
        return {**failure, "seconds": seconds}
    done.write_text(json.dumps({"seconds": seconds, **report}) + "\n")
    return None


def distill_student(
    folder: Path, teacher: Path, params: dict, seed: int, commands: dict[str, str]
) -> dict:
    """One student seed on the teacher folder's data and model, exported and evaluated."""
    new_cell(folder, merge(params, {"distill": {"seed": seed}}))
    (folder / "data").symlink_to(teacher / "data")
    (folder / "models").mkdir()
    (folder / "models/teacher").symlink_to(teacher / "models/teacher")
    steps = [(s, commands[s]) for s in STUDENT_STAGES]
    steps.append(("evaluate", evaluate_command(["teacher", "student", "int8"])))
    seconds, failure = run_steps(folder, steps)
    if failure:
        return {**failure, "seconds": seconds}
    return {
        "seconds": seconds,
        "metrics": json.loads((folder / "dvclive/evaluate/metrics.json").read_text()),
        "distill": json.loads((folder / "metrics/distill.json").read_text()),
    }


def measure_speed(folder: Path, threads: int) -> dict:
    """``bench_scorer`` on one student folder's teacher, student and INT8 scorer."""
    out = folder / "scorer.json"
    command = [
        sys.executable, "-m", "benchmarks.bench_scorer", "--teacher", "models/teacher",
        "--student", "models/student", "--onnx", "models/student_onnx",
        "--test", "data/prepared/test.csv", "--threads", str(threads), "--json", str(out),
    ]  # fmt: skip
    _, failure = run_steps(folder, [("bench_scorer", shlex.join(command))])
    if failure is None and not out.is_file():  # it skipped (a model folder is missing)
        log = (folder / "bench_scorer.log").read_text().strip().splitlines() or [""]
        failure = {"failed": "bench_scorer", "exit": 0, "message": log[-1]}
    return failure or json.loads(out.read_text())


def speedup(speed: dict) -> float:
    models = speed["models"]
    return models["student-onnx-int8"]["throughput_b"] / models["teacher"]["throughput_b"]


def what(record: dict) -> str:
    """Which part of a set a record is: a student seed, the teacher, or the speed run."""
    if record["kind"] == "speed":
        return "speed"
    return "teacher" if record["seed"] is None else f"student {record['seed']}"


def table(records: list[dict]) -> str:
    """One row per set (and overrides): test QWK of each model, what the student and INT8
    scorer keep of the teacher's, and the INT8 scorer's throughput over the teacher's."""
    groups: dict[tuple[str, str], dict[str, list[dict]]] = {}
    rows: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        rows.setdefault((record["set"], record["fixed"] or "defaults"), []).append(record)
    for key, row in split_versions(rows).items():
        group = groups.setdefault(key, {"student": [], "speed": []})
        for record in row:
            group[record["kind"]].append(record)
    cols = [
        "teacher test QWK", "student test QWK", "INT8 test QWK", "TF-IDF+LR test QWK",
        "student / teacher", "INT8 / teacher", "INT8 vs teacher throughput b32",
        "student seeds", "goal",
    ]  # fmt: skip
    lines = ["| set | overrides | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for (name, fixed), group in sorted(groups.items()):
        ok = [r["metrics"] for r in group["student"] if "metrics" in r]

        def qwk(model: str, ok: list[dict] = ok) -> list[float]:
            return [m[model]["test"]["qwk"] for m in ok]

        teacher = qwk("teacher")
        kept = {
            m: [a / t for a, t in zip(qwk(m), teacher, strict=True)] for m in ("student", "int8")
        }
        speeds = [speedup(r) for r in group["speed"] if "models" in r]
        failed = [f"{what(r)}: {r['failed']}" for g in group.values() for r in g if "failed" in r]
        if not ok or not speeds:
            verdict = "not decided"
        else:
            met = np.mean(kept["int8"]) >= GOAL_KEPT and speeds[-1] >= GOAL_SPEEDUP
            verdict = "met" if met else "⚠ not met"
        cells = [
            mean_std(teacher[:1]),
            mean_std(qwk("student")),
            mean_std(qwk("int8")),
            mean_std(qwk("tfidf_lr")[:1]),
            mean_std(kept["student"]),
            mean_std(kept["int8"]),
            f"{speeds[-1]:.1f}×" if speeds else "–",
            " ".join(str(r["seed"]) for r in group["student"] if "metrics" in r),
            verdict + (f" (failed: {'; '.join(failed)})" if failed else ""),
        ]
        lines.append(f"| {name} | {fixed} | " + " | ".join(cells) + " |")
    goal = f"Goal: INT8 / teacher ≥ {GOAL_KEPT} (mean of the seeds) at ≥ {GOAL_SPEEDUP:.0f}×."
    return "\n".join([*lines, "", goal])


def run(args: argparse.Namespace, records: list[dict]) -> list[dict]:
    """What ``records`` lacks of ``args``' sets, student seeds and speed runs; the new records."""
    fixed = shlex.join(args.overrides)
    commands = stage_commands()
    machine = machine_summary()
    # Done: a record of the same part run with today's params (not one of other defaults).
    have = {(r["set"], r["fixed"], r["kind"], r.get("seed"), version(r)) for r in records}

    new: list[dict] = []

    def save(record: dict) -> None:
        new.append(record | {"machine": machine})
        with args.out.open("a") as stream:
            stream.write(json.dumps(new[-1]) + "\n")

    for name in args.sets:
        params = set_params(name, args.datasets, args.overrides)
        root, suffix = set_folders(args.work, name, args.overrides)
        key = {"set": name, "fixed": fixed, "params": params}
        today = params_id(params)
        print(f"{name} {fixed}: teacher", flush=True)
        teacher_params = set_params(name, args.datasets, teacher_side(args.overrides))
        failure = train_teacher(root / "teacher", teacher_params, commands)
        if failure:
            print(f"  FAILED {failure['failed']}: {failure['message']}", flush=True)
            save(key | {"kind": "student", "seed": None} | failure)
            continue
        for seed in args.student_seeds:
            if (name, fixed, "student", seed, today) in have:
                continue
            print(f"{name} {fixed}: student seed {seed}", flush=True)
            folder = root / f"student-{seed}{suffix}"
            result = distill_student(folder, root / "teacher", params, seed, commands)
            save(key | {"kind": "student", "seed": seed} | result)
            print(f"  {result.get('failed', 'ok')} {result['seconds']}", flush=True)
        speed_done = (name, fixed, "speed", None, today) in have
        students = [root / f"student-{s}{suffix}" for s in args.student_seeds]
        measured = [f for f in students if (f / "dvclive/evaluate/metrics.json").is_file()]
        if not speed_done and measured:
            print(f"{name} {fixed}: bench_scorer on {measured[0].name}", flush=True)
            save(key | {"kind": "speed", "seed": None} | measure_speed(measured[0], args.threads))
    return new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_distill",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sets", nargs="+", default=["asap1", "asap5"], choices=list(SETS))
    parser.add_argument("--student-seeds", nargs="+", type=int, default=[42, 1, 2])
    parser.add_argument(
        "-S", "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="a params override (teacher and students)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="bench_scorer's CPU threads")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/distill.jsonl")
    parser.add_argument("--work", type=Path, default=Path("/tmp/hybridscore-bench-distill"))
    parser.add_argument("--datasets", type=Path, default=SHARED)
    parser.add_argument("--table", action="store_true", help="print the table of --out only")
    try:
        return run_then_table(parser.parse_args(argv), run, table)
    except StaleTeacher as error:  # nothing recorded: the results file keeps only results
        print(f"bench_distill: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
