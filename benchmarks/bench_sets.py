"""The pipeline on the public data sets (and the embedded sample, set ``sample``): per set and
seed, the teacher (and optionally the student and INT8 scorer) against TF-IDF + LR and the
second human rater, on test.

    python -m benchmarks.bench_sets                       # every set, seeds 42 1 2, teacher
    python -m benchmarks.bench_sets --sets asap1 asap5 --seeds 42 \\
        --grid train_teacher.learning_rate=8e-5,3e-5 -S train_teacher.epochs=3
    python -m benchmarks.bench_sets --models teacher student int8 --sets asap1
    python -m benchmarks.bench_sets --table               # only print the table of --out
    python -m benchmarks.bench_sets --jobs 8 --discard-models --datasets DIR   # on a GPU

Each cell (set x seed x grid point) runs the stage commands of dvc.yaml (human rows only:
``mix.synthetic_ratio 0``, no generation) in its own folder under ``--work``, with params.yaml
plus the overrides. A cell's result is appended to ``--out`` (JSON lines) as soon as it is
done, with the params it ran with, so a rerun skips the cells finished with today's params
(params.yaml's defaults may have changed since), and the table marks a record run with
other defaults ``[older defaults]``; a stage that fails (a collapsed teacher exits 2) is
recorded with its message. Grid size is the arguments: run what fits, the table
says what ran.
``--jobs`` runs that many cells at once (the stages train on the GPU where there is one).

A cell whose model stage would read exactly what an earlier cell's read (dvc.yaml's deps and
params of ``train_teacher``, ``teacher_logits``, ``distill``, ``export``, as DVC's run-cache
keys a stage) takes that stage's outputs instead of running it again: SciEntsBank's
unseen-answers and unseen-questions cells of one seed share train and validation rows and
differ only in test. Such a record says so (``reused``, those stages' seconds 0);
``--no-reuse-models`` runs every stage.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from benchmarks.machine import machine_summary
from hybridscore.report import flatten as dotted_keys
from hybridscore.sweep import human_only

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"


def public_sets(datasets: Path) -> dict[str, dict[str, object]]:
    """Each public set's ``data`` params, read from ``datasets`` (``../shared/datasets``),
    and the embedded sample's (params.yaml's own ``data``, the path made absolute)."""
    scientsbank = datasets / "semeval2013-scientsbank"
    asap = {
        f"asap{n}": {
            "data": {
                "source": f"asap-sas:{datasets}/asap-sas/set{n}",
                "path": f"{datasets}/asap-sas/set{n}",
            }
        }
        for n in (1, 2, 5, 6)
    }
    semeval = {
        f"scientsbank-{short}": {
            "data": {
                "source": f"semeval2013:{scientsbank}",
                "path": str(scientsbank),
                "test_split": split,
            }
        }
        for short, split in (("ua", "unseen-answers"), ("uq", "unseen-questions"))
    }
    sample = str(REPO / "data/sample/scientsbank.csv")
    return asap | semeval | {"sample": {"data": {"source": sample, "path": sample}}}


SETS = public_sets(SHARED)
REPLIES = "data/llm_cache/replies"  # a cell's LLM reply shards (hybridscore.llm.cache)
MODEL_STAGES = {
    "teacher": ["prepare", "synthesize", "mix", "train_teacher"],
    "student": ["teacher_logits", "distill"],
    "int8": ["export"],
}
GOAL_MARGIN = 0.08  # teacher test QWK over TF-IDF + LR, every ASAP set (issue #22)
GOAL_ASAP_MEAN = 0.80  # teacher test QWK, mean over the four ASAP-SAS sets (issue #22)
ASAP_SETS = ("asap1", "asap2", "asap5", "asap6")
# What names a record anyway (its seeds) or only says where this checkout keeps the data set.
UNVERSIONED = ("seed", "distill.seed", "data.source", "data.path")


# YAML 1.2's floats that YAML 1.1 (PyYAML) reads as strings: ``3e-5``, ``1E3`` (no dot).
EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def as_yaml12(value: object) -> object:
    """``value`` as YAML 1.2 reads it: an exponent float left as text (``'3e-5'``) as its
    float, anything else as it is."""
    return float(value) if isinstance(value, str) and EXPONENT_FLOAT.fullmatch(value) else value


def params_id(params: dict) -> str:
    """A short hash of the params a cell ran with, less :data:`UNVERSIONED`: two records of one
    label (``defaults``, a grid point) with other ids ran with other defaults, params.yaml
    having changed between the runs. A value kept as text, ``'8e-5'``, counts as its float."""
    kept = {k: as_yaml12(v) for k, v in dotted_keys(params).items() if k not in UNVERSIONED}
    return hashlib.sha1(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:8]


def version(record: dict) -> str | None:
    """The params id of a record; None for one written before records kept their params."""
    return params_id(record["params"]) if "params" in record else None


def split_versions(groups: dict[tuple, list[dict]]) -> dict[tuple, list[dict]]:
    """``groups`` (a table's rows) split by params version where a row holds records of more
    than one: the key's last part then names the version (``[params 1a2b3c4d]``)."""
    out: dict[tuple, list[dict]] = {}
    for key, group in groups.items():
        versions = [version(r) for r in group]
        several = len(set(versions)) > 1
        for record, made in zip(group, versions, strict=True):
            tag = f" [params {made or 'not recorded'}]" if several else ""
            out.setdefault((*key[:-1], f"{key[-1]}{tag}"), []).append(record)
    return out


def nested(dotted: str, value: object) -> dict[str, object]:
    out: dict[str, object] = {}
    node = out
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return out


def with_dotted(params: dict, values: dict[str, object]) -> dict:
    """``params`` with each ``section.key`` of ``values`` set."""
    for key, value in values.items():
        params = merge(params, nested(key, value))
    return params


def parse_value(text: str) -> object:
    """``text`` read as YAML the way ``dvc exp run -S`` reads it (YAML 1.2: ``3e-5`` is a
    float, as params.yaml's ``3.0e-05`` is)."""
    return as_yaml12(yaml.safe_load(text))


def parse_overrides(texts: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` arguments (``-S``) as dotted keys and YAML values."""
    return {key: parse_value(value) for key, value in (t.split("=", 1) for t in texts)}


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def stage_commands() -> dict[str, str]:
    return {name: " ".join(stage["cmd"].split()) for name, stage in dvc_stages().items()}


def evaluate_command(models: list[str]) -> str:
    """dvc.yaml's evaluate command for the models this cell trained (TF-IDF + LR always),
    with every training table the leakage audit reads (a leak fails the cell)."""
    flags = {
        "teacher": "--teacher models/teacher",
        "student": "--student models/student",
        "int8": "--int8 models/student_onnx",
    }
    return (
        "python -m hybridscore.evaluate --val data/prepared/val.csv --test data/prepared/test.csv"
        " --labels data/prepared/labels.json --train data/mixed/train.csv"
        " --synthetic data/synthetic/rows.csv --transfer data/prepared/train.csv"
        f" --live-dir dvclive/evaluate {' '.join(flags[m] for m in models)}"
    )


# The stages that make models: their inputs repeat across cells that differ only in test.
REUSED_STAGES = ("train_teacher", "teacher_logits", "distill", "export")
IGNORED_IN_DEPS = ("__pycache__",)


def entry_paths(entries: list) -> list[str]:
    """dvc.yaml's deps/outs/plots entries as paths (an entry may be ``{path: options}``)."""
    return [entry if isinstance(entry, str) else next(iter(entry)) for entry in entries]


def stage_key(folder: Path, stage: dict, params: dict) -> str:
    """What DVC's run-cache keys ``stage`` (a dvc.yaml stage) on in cell ``folder``: its
    command, the content of its deps (a cell's own file, else the repository's: code, configs)
    and the values of its params. Equal keys, equal outputs: the stages are seeded and
    deterministic."""
    digest = hashlib.sha256(" ".join(stage["cmd"].split()).encode())
    for dep in sorted(entry_paths(stage.get("deps", []))):
        root = folder / dep if (folder / dep).exists() else REPO / dep
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for file in files:
            if file.is_file() and not set(IGNORED_IN_DEPS) & set(file.parts):
                digest.update(f"{dep}/{file.relative_to(root).as_posix()}".encode())
                digest.update(file.read_bytes())
    flat = dotted_keys(params)
    for name in stage.get("params", []):
        chosen = {k: v for k, v in flat.items() if k == name or k.startswith(f"{name}.")}
        digest.update(json.dumps(chosen, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]


def stage_outputs(stage: dict) -> list[str]:
    """Everything ``stage`` writes that a cell reads afterwards: outs, metrics and plots."""
    return [p for part in ("outs", "metrics", "plots") for p in entry_paths(stage.get(part, []))]


class StageStore:
    """The outputs of ``stages`` (dvc.yaml's, by name) by :func:`stage_key`, kept under ``root``
    (hard links where the disk allows): :meth:`run` runs a stage only if no earlier cell ran
    it on the same inputs."""

    def __init__(self, root: Path, stages: dict[str, dict]) -> None:
        self.root, self.stages = root, stages
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:  # two cells of one key at once: the second waits, then reuses
            return self._locks.setdefault(key, threading.Lock())

    def run(
        self, folder: Path, params: dict, step: tuple[str, str]
    ) -> tuple[dict[str, float], dict | None, str | None]:
        """``step`` (one of :attr:`stages`) in ``folder``, or its stored outputs copied there;
        the seconds, a failure and the key reused (None: run here)."""
        stage = self.stages[step[0]]
        key = f"{step[0]}-{stage_key(folder, stage, params)}"
        kept = self.root / key
        with self._lock(key):
            if kept.is_dir():
                copy_outputs(kept, folder, stage_outputs(stage))
                return {step[0]: 0.0}, None, key
            seconds, failure = run_steps(folder, [step])
            if failure is None:
                partial = kept.with_name(f"{key}.partial")
                shutil.rmtree(partial, ignore_errors=True)
                copy_outputs(folder, partial, stage_outputs(stage))
                partial.rename(kept)  # whole or absent
            return seconds, failure, None


def copy_outputs(source: Path, target: Path, paths: list[str]) -> None:
    """``paths`` (files or folders) from ``source`` to ``target``, as hard links where they can
    be (no file is written to after its stage, so sharing one is safe)."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    for path in paths:
        src, dst = source / path, target / path
        if not src.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst, copy_function=link)
        else:
            dst.unlink(missing_ok=True)
            link(str(src), str(dst))


def run_steps(folder: Path, steps: list[tuple[str, str]]) -> tuple[dict[str, float], dict | None]:
    """Each ``(stage, command)`` in ``folder``, its output in ``<stage>.log`` there; the
    seconds per stage and, when one fails, the failure (stage, exit status, last stderr line),
    after which no later stage runs."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "DVC_NO_ANALYTICS": "1",
        "PYTHONPATH": str(REPO),  # a step may be a benchmark module (bench_distill's speed run)
    }
    seconds: dict[str, float] = {}
    for stage, command in steps:
        started = time.perf_counter()
        done = subprocess.run(
            shlex.split(command), cwd=folder, env=env, capture_output=True, text=True
        )
        seconds[stage] = round(time.perf_counter() - started, 1)
        (folder / f"{stage}.log").write_text(done.stdout + done.stderr)
        if done.returncode:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            failure = {
                "failed": stage,
                "exit": done.returncode,
                "message": lines[-1] if lines else "",
            }
            return seconds, failure
    return seconds, None


def new_cell(folder: Path, params: dict) -> None:
    """An empty cell folder with ``params`` as its params.yaml (and ``src`` for the prompt
    templates, params relative to the repository root). The LLM replies of an earlier run
    there (a killed generation's too) are kept: a rerun sends only the requests they lack.
    Replies reached through a link (a student folder's ``data`` is its teacher's) stay where
    they are."""
    replies = folder / REPLIES
    kept = folder.with_name(f"{folder.name}.replies")
    shutil.rmtree(kept, ignore_errors=True)
    if replies.is_dir() and replies.resolve().is_relative_to(folder.resolve()):
        replies.rename(kept)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if kept.is_dir():
        (folder / REPLIES).parent.mkdir(parents=True)
        kept.rename(folder / REPLIES)
    (folder / "src").symlink_to(REPO / "src")
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_cell(
    folder: Path,
    params: dict,
    models: list[str],
    commands: dict[str, str],
    store: StageStore | None = None,
) -> dict[str, object]:
    """The stages of one cell in ``folder`` (a model stage from ``store`` where an earlier
    cell ran it on the same inputs); its metrics, or the failing stage and message."""
    new_cell(folder, params)
    steps = [(s, commands[s]) for m in models for s in MODEL_STAGES[m]]
    steps.append(("evaluate", evaluate_command(models)))
    seconds: dict[str, float] = {}
    reused: dict[str, str] = {}
    for step in steps:
        if store is not None and step[0] in store.stages:
            more, failure, key = store.run(folder, params, step)
            if key:
                reused[step[0]] = key
        else:
            more, failure = run_steps(folder, [step])
        seconds |= more
        if failure:
            break
    if failure:
        return {**failure, "seconds": seconds, "epochs": epoch_history(folder)}
    result: dict[str, object] = {"seconds": seconds, "epochs": epoch_history(folder)}
    if reused:
        result["reused"] = reused
    result["metrics"] = json.loads((folder / "dvclive/evaluate/metrics.json").read_text())
    result["train_teacher"] = json.loads((folder / "metrics/train_teacher.json").read_text())
    result["rows"] = json.loads((folder / "metrics/prepare.json").read_text()).get("rows")
    return result


def epoch_history(folder: Path) -> list[dict[str, float]]:
    """The teacher's training loss and validation metrics per epoch (its dvclive run), also
    for a run that failed: how a collapse came about."""
    root = folder / "dvclive/train_teacher/plots/metrics"
    steps: dict[int, dict[str, float]] = {}
    for tsv in sorted(root.rglob("*.tsv")):
        name = tsv.relative_to(root).with_suffix("").as_posix()
        for line in tsv.read_text().splitlines()[1:]:
            step, value = line.split("\t")
            steps.setdefault(int(step), {})[name] = float(value)
    return [steps[step] for step in sorted(steps)]


def flatten(tree: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flatten(value, f"{name}/")
        elif isinstance(value, (int, float)):
            out[name] = float(value)
    return out


def mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def table(records: list[dict]) -> str:
    """One row per set and grid point: means ± std over the seeds that ran. Where the records
    were run with different fixed overrides (``-S``), those are part of the grid point; a
    record whose params are not what its cell would run with today (params.yaml changed
    since) is marked ``[older defaults]``, one written before records kept their params
    ``[params not recorded]``."""
    several_fixed = len({r.get("fixed", "") for r in records}) > 1
    defaults = yaml.safe_load((REPO / "params.yaml").read_text())
    groups: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        point = record["point"]
        if several_fixed and record.get("fixed"):
            point += f" ({record['fixed']})"
        if "params" not in record:
            point += " [params not recorded]"
        elif version(record) != todays_version(record, defaults):
            point += " [older defaults]"
        groups.setdefault((record["set"], point), []).append(record)
    groups = split_versions(groups)
    has = {m for r in records for m in r.get("models", [])}
    cols = ["teacher val QWK", "teacher test QWK", "TF-IDF+LR test QWK", "margin"]
    cols += [f"{m} test QWK" for m in ("student", "int8") if m in has]
    cols += ["rater 2 val QWK", "seeds", "failed / collapsed"]
    lines = ["| set | grid point | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for (name, point), group in sorted(groups.items()):
        ok = [flatten(r["metrics"]) for r in group if "metrics" in r]

        def get(key: str, ok: list[dict[str, float]] = ok) -> list[float]:
            return [m[key] for m in ok if key in m]

        margins = [
            a - b for a, b in zip(get("teacher/test/qwk"), get("tfidf_lr/test/qwk"), strict=True)
        ]
        flag = " ⚠ below goal" if margins and np.mean(margins) < GOAL_MARGIN else ""
        cells = [
            mean_std(get("teacher/val/qwk")),
            mean_std(get("teacher/test/qwk")),
            mean_std(get("tfidf_lr/test/qwk")),
            mean_std(margins) + flag,
        ]
        cells += [mean_std(get(f"{m}/test/qwk")) for m in ("student", "int8") if m in has]
        cells += [
            mean_std(get("human_rater2/val/qwk")[:1]),
            " ".join(str(r["seed"]) for r in group),
        ]
        failed = [
            f"{r['seed']}: {r['failed']} ({r['message'][:80]})" for r in group if "failed" in r
        ]
        failed += [f"{r['seed']}: {role} one class" for r in group for role in one_class(r)]
        cells.append("; ".join(failed) or "0")
        lines.append(f"| {name} | {point} | " + " | ".join(cells) + " |")
    return "\n".join(lines + asap_means(groups))


def one_class(record: dict) -> list[str]:
    """The models of a finished ``record`` that predict one label on test (evaluate's
    ``predicted_labels``; a stage run with ``fail_on_collapse: false`` can save one)."""
    metrics = record.get("metrics", {})
    return [
        role
        for role in ("teacher", "student", "int8")
        if metrics.get(role, {}).get("test", {}).get("predicted_labels") == 1
    ]


def asap_means(groups: dict[tuple[str, str], list[dict]]) -> list[str]:
    """Per grid point, the teacher's test QWK averaged over the ASAP-SAS sets (each set's
    mean over its finished seeds first), against the goal. ``groups`` are :func:`table`'s
    records per (set, grid point). A set whose cells all failed fails the goal; a set that
    did not run leaves it undecided."""
    per_point: dict[str, dict[str, list[float]]] = {}
    for (name, point), group in sorted(groups.items()):
        if name in ASAP_SETS:
            qwks = [r["metrics"]["teacher"]["test"]["qwk"] for r in group if "metrics" in r]
            per_point.setdefault(point, {})[name] = qwks
    lines = []
    for point, sets in sorted(per_point.items()):
        finished = {name: float(np.mean(v)) for name, v in sets.items() if v}
        mean = float(np.mean(list(finished.values()))) if finished else None
        failed = sorted(set(sets) - set(finished))
        if failed:
            verdict = f"⚠ below goal: no cell of {', '.join(failed)} finished"
        elif len(sets) < len(ASAP_SETS):
            verdict = f"{len(sets)} of {len(ASAP_SETS)} sets ran: goal not decided"
        else:
            verdict = "goal met" if mean >= GOAL_ASAP_MEAN else "⚠ below goal"
        lines.append(
            f"ASAP-SAS mean teacher test QWK, {point}: "
            f"{'–' if mean is None else f'{mean:.3f}'} over "
            f"{', '.join(sorted(finished)) or 'no set'} (goal ≥ {GOAL_ASAP_MEAN:.2f}: {verdict})"
        )
    return ["", *lines] if lines else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_sets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 1, 2])
    parser.add_argument("--models", nargs="+", default=["teacher"], choices=list(MODEL_STAGES))
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a params axis (repeatable: the product is run)",
    )
    parser.add_argument(
        "-S",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a fixed params override",
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results/sets.jsonl")
    parser.add_argument("--work", type=Path, default=Path("/tmp/hybridscore-bench-sets"))
    parser.add_argument(
        "--datasets", type=Path, default=SHARED, help="the public data sets' folder"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="cells run at once (a GPU takes several)"
    )
    parser.add_argument(
        "--discard-models",
        action="store_true",
        help="delete a finished cell's models/ (a large grid's disk)",
    )
    parser.add_argument(
        "--reuse-models",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="take an earlier cell's models made from the same inputs (kept under --work)",
    )
    parser.add_argument("--table", action="store_true", help="print the table of --out only")
    return run_then_table(parser.parse_args(argv), run_grid, table)


def run_then_table(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace, list[dict]], list[dict]],
    table: Callable[[list[dict]], str],
) -> int:
    """A benchmark's main: unless ``--table``, ``run`` what ``args.out``'s earlier records lack
    (skipped without the public data sets, unless only the embedded sample is asked for); then
    the table of all the records."""
    records = (
        [json.loads(x) for x in args.out.read_text().splitlines()] if args.out.is_file() else []
    )
    if not args.table:
        if not args.datasets.is_dir() and set(args.sets) - {"sample"}:
            print(f"skipped: {args.datasets} not found (the public data sets, --datasets)")
            return 0
        args.out.parent.mkdir(parents=True, exist_ok=True)
        records += run(args, records)
    print(table(records))
    return 0


def point_label(point: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in point.items()) or "defaults"


def cell_params(base: dict, data: dict, point: dict, seed: int) -> dict:
    """A cell's params: ``base`` (params.yaml and the fixed ``-S``), its set's ``data`` params
    and its grid point; human rows only."""
    transfer = base["distill"]["transfer_unused_synthetic"]
    chosen = human_only({"mix.synthetic_ratio": 0.0, **point, "seed": seed}, transfer)
    return with_dotted(merge(base, data), chosen)


def todays_version(record: dict, defaults: dict) -> str:
    """The params id ``record``'s cell would run with today, ``defaults`` being params.yaml."""
    base = with_dotted(defaults, parse_overrides(shlex.split(record.get("fixed") or "")))
    point = {} if record["point"] == "defaults" else parse_overrides(record["point"].split())
    return params_id(cell_params(base, SETS.get(record["set"], {}), point, record["seed"]))


def run_grid(args: argparse.Namespace, records: list[dict]) -> list[dict]:
    """Every cell of ``args``' grid not yet in ``records``, ``args.jobs`` at a time; each
    record is appended to ``args.out`` as soon as its cell is done."""
    sets = public_sets(args.datasets)
    base = with_dotted(
        yaml.safe_load((REPO / "params.yaml").read_text()), parse_overrides(args.overrides)
    )
    axes = [
        (k, [parse_value(v) for v in vs.split(",")])
        for k, vs in (g.split("=", 1) for g in args.grid)
    ]
    points = [
        dict(zip([k for k, _ in axes], combo, strict=True))
        for combo in itertools.product(*[vs for _, vs in axes])
    ]
    fixed = shlex.join(args.overrides)
    commands = stage_commands()
    stages = dvc_stages()
    store = (
        StageStore(args.work / "stage-outputs", {s: stages[s] for s in REUSED_STAGES})
        if args.reuse_models
        else None
    )
    machine = machine_summary()
    # Done: a record of the same cell run with today's params (not one of other defaults).
    done = {(r["set"], r["point"], r["seed"], r["fixed"], version(r)) for r in records}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lock = threading.Lock()
    new: list[dict] = []

    def run(index: int, seed: int, name: str, point: dict, params: dict) -> None:
        label = point_label(point)
        with lock:  # one whole line per print, whatever the other cells write
            print(f"cell {name} {label} seed {seed} {fixed}", flush=True)
        folder = args.work / f"{name}-{index}"
        record = {
            "set": name,
            "point": label,
            "seed": seed,
            "fixed": fixed,
            "models": args.models,
            "params": params,
            **run_cell(folder, params, args.models, commands, store),
            "machine": machine,
        }
        if args.discard_models:
            shutil.rmtree(folder / "models", ignore_errors=True)
        outcome = "FAILED " + record["message"] if "failed" in record else "ok"
        with lock:
            new.append(record)
            with args.out.open("a") as stream:
                stream.write(json.dumps(record) + "\n")
            print(f"  {name} {label} seed {seed}: {outcome} {record['seconds']}", flush=True)

    cells = []
    for seed, name, point in itertools.product(args.seeds, args.sets, points):
        params = cell_params(base, sets[name], point, seed)
        if (name, point_label(point), seed, fixed, params_id(params)) not in done:
            cells.append((seed, name, point, params))
    with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        futures = [pool.submit(run, len(records) + i, *cell) for i, cell in enumerate(cells)]
        for future in futures:
            future.result()
    if args.discard_models and store is not None:
        shutil.rmtree(store.root, ignore_errors=True)
    return new


if __name__ == "__main__":
    sys.exit(main())
