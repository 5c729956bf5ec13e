"""``hybridscore report``: tables, plots and a computed conclusion from a sweep's experiments.

Reads every finished DVC experiment of one baseline commit (or of each ``--rev``) straight
from git (the commits under ``refs/exps/<baseline[:2]>/<baseline[2:]>/``: their
``params.yaml``, ``dvc.lock`` and metrics files, in one ``git cat-file --batch`` call per
baseline; no ``dvc exp show``), groups them into grid cells
(equal in every param but the training seeds) and writes ``reports/report.md`` plus PNG plots.
``reports/`` is gitignored: it is regenerated from the experiments, which are the record.

The best cell of each human budget is chosen on the VALIDATION mean of ``--metric`` of
``--role`` and compared with the human-only cell (``mix.synthetic_ratio`` 0) of the same budget
on the TEST split by a paired t-test over the training seeds both cells ran. Where the grid has
several temperatures, each mix's best temperature on validation is compared with the others the
same way.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import subprocess
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hybridscore.errors import HybridscoreError, run_stage

METRICS = ("qwk", "macro_f1", "accuracy", "roc_auc")
METRIC_NAMES = {"qwk": "QWK", "macro_f1": "macro-F1", "accuracy": "accuracy", "roc_auc": "ROC-AUC"}
ROLES = ("teacher", "student", "int8")
SPLITS = ("val", "test")
SEED_KEYS = ("seed", "train_teacher.seed", "distill.seed")
DATASET_PREFIXES = ("data.", "prepare.")
MODEL_INPUT = "data.input"  # what the models read: an experiment axis, not another data set
RATIO, TEMPERATURE, BUDGET = "mix.synthetic_ratio", "synthesize.temperature", "mix.human_per_label"
PARAMS_FILE, LOCK_FILE = "params.yaml", "dvc.lock"
EVALUATE_METRICS = "dvclive/evaluate/metrics.json"
INT8_METRICS = "dvclive/evaluate_int8/metrics.json"
ROWS_ASKED = "synthesize.responses_per_label"
INT8_STAGE = "evaluate_int8"  # its metrics count only where the stage is current
MIX_METRICS = "metrics/mix.json"
CALIBRATION = "dvclive/evaluate/calibration.json"
CONFUSION = "dvclive/evaluate/plots/sklearn/confusion_{role}_test.json"
MISSING = "–"
DIFFERENCE_HEADER = (
    "mix",
    "human-only",
    "pairs",
    "mean difference",
    "95 % t-interval",
    "p",
    "beyond noise",
)
ROLE_WHY = (
    "the teacher is the model trained on the mix itself (as in the paper), so it shows the"
    " effect of the synthetic rows most directly; the student also learns from teacher-labelled"
    " texts the mix left out, which blurs that effect (`--role student` asks about the deployed"
    " model instead)"
)
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Key = tuple[Any, ...]


# ---------------------------------------------------------------- reading the experiments


def git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    """Run ``git``; a failure becomes one ``HybridscoreError``."""
    done = subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True, check=False)
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        raise HybridscoreError(f"`git {' '.join(args)}` failed: {message}")
    return done.stdout


def read_blobs(repo: Path, specs: Sequence[str]) -> dict[str, bytes | None]:
    """``{"<commit>:<path>": content or None when absent}`` in one ``git cat-file --batch``."""
    out = git(repo, "cat-file", "--batch", stdin="".join(f"{s}\n" for s in specs).encode())
    found: dict[str, bytes | None] = {}
    at = 0
    for spec in specs:
        end = out.index(b"\n", at)
        header = out[at:end].split()
        at = end + 1
        if len(header) != 3 or header[1] != b"blob":
            found[spec] = None
            continue
        size = int(header[2])
        found[spec] = out[at : at + size]
        at += size + 1
    return found


def freeze(value: Any) -> Any:
    """A hashable copy of a YAML value (lists become tuples)."""
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    return value


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"mix": {"synthetic_ratio": 0.8}}`` -> ``{"mix.synthetic_ratio": 0.8}``."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = freeze(value)
    return flat


@dataclass
class Experiment:
    """One finished experiment: its flattened params, quality metrics and code fingerprint."""

    name: str
    commit: str
    params: dict[str, Any]
    metrics: dict[str, dict[str, dict[str, float]]]  # role -> split -> metric -> value
    code: dict[tuple[str, str], str]  # (stage, src path) -> md5 of the stages it ran
    data: dict[tuple[str, str], str]  # (prepare, data path) -> md5
    mix: dict[str, Any]

    def value(self, role: str, split: str, metric: str) -> float | None:
        value = self.metrics.get(role, {}).get(split, {}).get(metric)
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

    @property
    def seeds(self) -> Key:
        """The effective training seeds (top-level ``seed`` where a stage's own is null)."""
        top = self.params.get("seed")
        return tuple(
            self.params.get(k) if self.params.get(k) is not None else top for k in SEED_KEYS
        )


def parse_json(name: str, path: str, blob: bytes | None, required: bool) -> Any:
    if blob is None:
        if required:
            raise HybridscoreError(f"experiment {name}: {path} is missing (did it run evaluate?)")
        return {}
    try:
        value = json.loads(blob)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HybridscoreError(f"experiment {name}: {path} is unreadable: {exc}") from None
    if not isinstance(value, dict | list):
        raise HybridscoreError(f"experiment {name}: {path} is unreadable: not a JSON object")
    return value


def lock_stages(name: str, blob: bytes | None) -> dict[str, dict[str, Any]]:
    if blob is None:
        return {}
    try:
        lock = yaml.load(blob, Loader=Loader) or {}
    except yaml.YAMLError as exc:
        raise HybridscoreError(f"experiment {name}: {LOCK_FILE} is unreadable: {exc}") from None
    return lock.get("stages", {}) if isinstance(lock, dict) else {}


def dep_md5s(
    stages: dict[str, dict[str, Any]], base: dict[str, dict[str, Any]], keep: str
) -> dict[tuple[str, str], str]:
    """``(stage, path) -> md5`` of the deps under ``keep`` of the stages the experiment ran
    (a stage whose lock entry equals the baseline's was carried over, not run)."""
    found = {}
    for stage, entry in stages.items():
        if entry == base.get(stage) or not isinstance(entry, dict):
            continue
        for dep in entry.get("deps") or []:
            path = str(dep.get("path", ""))
            if path.startswith(keep):
                found[stage, path] = str(dep.get("md5"))
    return found


def current_stages(stages: dict[str, dict[str, Any]]) -> set[str]:
    """The stages whose deps are the outputs their producing stages record in the same lock,
    all the way up: a queued ``evaluate`` run carries the baseline's later stages over
    unchanged, and their metrics describe the baseline's models, not this experiment's."""
    producer = {
        str(out.get("path")): (stage, out.get("md5"))
        for stage, entry in stages.items()
        if isinstance(entry, dict)
        for out in entry.get("outs") or []
    }
    verdict: dict[str, bool] = {}

    def current(stage: str) -> bool:
        if stage not in verdict:
            verdict[stage] = True  # a cycle cannot make a stage stale
            verdict[stage] = all(
                source is None or (source[1] == dep.get("md5") and current(source[0]))
                for dep in stages[stage].get("deps") or []
                for source in [producer.get(str(dep.get("path")))]
            )
        return verdict[stage]

    return {stage for stage, entry in stages.items() if isinstance(entry, dict) and current(stage)}


def load_experiments(repo: Path, rev: str) -> tuple[str, list[Experiment]]:
    """The baseline commit of ``rev`` and its experiments (sorted by name)."""
    baseline = git(repo, "rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()
    prefix = f"refs/exps/{baseline[:2]}/{baseline[2:]}/"
    refs = git(repo, "for-each-ref", "--format=%(objectname) %(refname)", prefix).decode().split()
    named = sorted(
        (ref.removeprefix(prefix), sha) for sha, ref in zip(refs[::2], refs[1::2], strict=True)
    )
    if not named:
        raise HybridscoreError(
            f"no experiments for baseline {baseline[:7]} ({rev}): run `hybridscore sweep GRID`"
            " (or `dvc exp pull` a shard's), or pass --rev for another baseline"
        )
    files = (PARAMS_FILE, LOCK_FILE, EVALUATE_METRICS, INT8_METRICS, MIX_METRICS)
    blobs = read_blobs(
        repo, [f"{baseline}:{LOCK_FILE}", *(f"{sha}:{f}" for _, sha in named for f in files)]
    )
    base = lock_stages("baseline", blobs[f"{baseline}:{LOCK_FILE}"])
    experiments = []
    for name, sha in named:
        raw = {f: blobs[f"{sha}:{f}"] for f in files}
        if raw[PARAMS_FILE] is None:
            raise HybridscoreError(f"experiment {name}: {PARAMS_FILE} is missing")
        try:
            params = yaml.load(raw[PARAMS_FILE], Loader=Loader)
        except yaml.YAMLError as exc:
            raise HybridscoreError(f"experiment {name}: {PARAMS_FILE} unreadable: {exc}") from None
        metrics = parse_json(name, EVALUATE_METRICS, raw[EVALUATE_METRICS], required=True)
        stages = lock_stages(name, raw[LOCK_FILE])
        if INT8_STAGE not in stages or INT8_STAGE in current_stages(stages):
            metrics |= parse_json(name, INT8_METRICS, raw[INT8_METRICS], required=False)
        experiments.append(
            Experiment(
                name=name,
                commit=sha,
                params=flatten(params if isinstance(params, dict) else {}),
                metrics={k: v for k, v in metrics.items() if isinstance(v, dict)},
                code=dep_md5s(stages, base, "src/"),
                data=dep_md5s({"prepare": stages.get("prepare", {})}, base, "data/"),
                mix=parse_json(name, MIX_METRICS, raw[MIX_METRICS], required=False),
            )
        )
    return baseline, experiments


# ---------------------------------------------------------------- checks and the grid


def differing(
    experiments: Sequence[Experiment], values: str, absent_differs: bool = True
) -> dict[Any, dict[Any, list[str]]]:
    """``{key: {value: [experiment names]}}`` for the keys of ``values`` that differ (an
    experiment without the key counts as null, or is left out unless ``absent_differs``)."""
    keys = sorted({k for e in experiments for k in getattr(e, values)}, key=str)
    found = {}
    for key in keys:
        seen: dict[Any, list[str]] = {}
        for e in experiments:
            if absent_differs or key in getattr(e, values):
                seen.setdefault(getattr(e, values).get(key), []).append(e.name)
        if len(seen) > 1:
            found[key] = seen
    return found


def describe(key: Any, seen: dict[Any, list[str]]) -> str:
    shown = "; ".join(
        f"{v!r} in {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
        for v, names in seen.items()
    )
    return f"{key if isinstance(key, str) else f'{key[1]} (stage {key[0]})'}: {shown}"


def check_consistent(
    experiments: Sequence[Experiment], accepted: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """The axes (params that differ) and the accepted code paths that differ; refuse mixed
    datasets and experiments of different code outside ``accepted`` (path prefixes)."""
    params = differing(experiments, "params")
    mixed = [
        describe(k, v)
        for k, v in params.items()
        if k.startswith(DATASET_PREFIXES) and k != MODEL_INPUT
    ]
    mixed += [describe(k, v) for k, v in differing(experiments, "data", False).items()]
    if mixed:
        raise HybridscoreError(
            "experiments use different datasets, not comparable: "
            + " | ".join(mixed[:3])
            + " (select one baseline with --rev, or rerun them on the same data)"
        )
    code = differing(experiments, "code", False)
    waived = sorted({path for _, path in code if path.startswith(tuple(accepted))})
    stale = [describe(k, v) for k, v in code.items() if k[1] not in waived]
    if stale:
        raise HybridscoreError(
            "experiments ran different code: "
            + " | ".join(stale[:3])
            + " (rerun the stale ones on this commit, e.g. `hybridscore sweep GRID` after"
            " `dvc exp remove` of them; or, where you know the change cannot move a metric,"
            " --accept-code PATH)"
        )
    runs: dict[Key, str] = {}
    for e in experiments:
        run = freeze(e.params)
        if run in runs:
            raise HybridscoreError(
                f"experiments {runs[run]} and {e.name} ran the same params and seeds: remove one"
                " (`dvc exp remove`), or report one baseline with --rev"
            )
        runs[run] = e.name
    # the sweep queues human-only cells with responses_per_label 0 (they ask for nothing), and
    # `auto` asks each human budget for what its largest ratio needs: it is an axis only where
    # cells that generate for one budget differ in it
    generating: dict[Any, set[Any]] = {}
    for e in experiments:
        if e.params.get(RATIO) != 0:
            generating.setdefault(e.params.get(BUDGET), set()).add(e.params.get(ROWS_ASKED))
    asked_varies = any(len(asked) > 1 for asked in generating.values())
    return [k for k in params if k != ROWS_ASKED or asked_varies], waived


def sort_key(value: Any) -> tuple[int, Any]:
    """Numbers ascending, then strings, then null (``human_per_label`` null = all rows) last."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return 0, value
    return (2, "") if value is None else (1, str(value))


def show(value: Any) -> str:
    """An axis value as the report prints it."""
    return "all" if value is None else yaml.safe_dump(value, default_flow_style=True).strip(".\n ")


def axis_name(key: str) -> str:
    return key.rsplit(".", 1)[-1]


@dataclass
class Cell:
    """One grid cell: every experiment with these axis values (one per training seed)."""

    axes: dict[str, Any]
    experiments: list[Experiment]

    @property
    def label(self) -> str:
        return " ".join(f"{axis_name(k)}={show(v)}" for k, v in self.axes.items()) or "(all)"

    def by_seed(self, role: str, split: str, metric: str) -> dict[Key, float]:
        found = {}
        for e in self.experiments:
            value = e.value(role, split, metric)
            if value is not None:
                found[e.seeds] = value
        return found

    def summary(self, role: str, split: str, metric: str) -> Summary | None:
        return summarize(list(self.by_seed(role, split, metric).values()))

    def mean(self, role: str, split: str, metric: str) -> float | None:
        summary = self.summary(role, split, metric)
        return summary.mean if summary else None

    def one_class(self, role: str, split: str) -> str:
        """`` (one class in k of n)`` where k of the n seeds' models predicted a single label
        on ``split`` (evaluate's ``predicted_labels``; older runs lack it and say nothing)."""
        counts = [e.value(role, split, "predicted_labels") for e in self.experiments]
        known = [c for c in counts if c is not None]
        ones = sum(c == 1 for c in known)
        return f" (one class in {ones} of {len(known)})" if ones else ""


@dataclass
class Grid:
    axes: dict[str, list[Any]]  # non-seed axes and their values seen, sorted
    cells: list[Cell]  # every combination; empty cells are the missing ones
    budget: Any = None  # mix.human_per_label when it is not an axis (the same everywhere)

    def budgets(self) -> list[Any]:
        return self.axes.get(BUDGET, [self.budget])

    def at_budget(self, budget: Any) -> list[Cell]:
        return [c for c in self.cells if c.axes.get(BUDGET, budget) == budget]


def build_grid(experiments: Sequence[Experiment], axes: Sequence[str]) -> Grid:
    """The product of the axes' values seen (a partial grid has empty cells)."""
    keys = [k for k in axes if k not in SEED_KEYS]
    values = {k: sorted({e.params.get(k) for e in experiments}, key=sort_key) for k in keys}
    groups: dict[Key, list[Experiment]] = {}
    for e in experiments:
        groups.setdefault(tuple(e.params.get(k) for k in keys), []).append(e)
    cells = [
        Cell(dict(zip(keys, combo, strict=True)), groups.get(combo, []))
        for combo in itertools.product(*values.values())
    ]
    humans = ran_human_only(cells)
    kept = [c for c in cells if c.experiments or not human_twin(c, humans)]
    budget = experiments[0].params.get(BUDGET) if experiments and BUDGET not in keys else None
    return Grid(values, kept, budget)


def ran_human_only(cells: Sequence[Cell]) -> list[Cell]:
    """The human-only (ratio 0) cells among ``cells`` that have experiments."""
    return [c for c in cells if c.axes.get(RATIO) == 0 and c.experiments]


def human_twin(cell: Cell, humans: Sequence[Cell]) -> bool:
    """A ratio-0 cell that a sweep ran once, at another temperature, is not missing."""
    return cell.axes.get(RATIO) == 0 and human_only_of(cell, humans) is not None


def human_only_of(cell: Cell, humans: Sequence[Cell]) -> Cell | None:
    """The first of ``humans`` that ``cell`` is compared with (see ``matches``), if any."""
    return next((h for h in humans if matches(h, cell)), None)


# ---------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None


def t_critical(df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, df))


def summarize(values: Sequence[float]) -> Summary | None:
    """Mean, sample std and 95 % t-interval of the mean (std/interval need n >= 2)."""
    n = len(values)
    if n == 0:
        return None
    mean = sum(values) / n
    if n == 1:
        return Summary(1, mean, None, None, None)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_critical(n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def fmt(summary: Summary | None) -> str:
    if summary is None:
        return MISSING
    if summary.std is None:
        return f"{summary.mean:.3f}"
    return f"{summary.mean:.3f} ± {summary.std:.3f} [{summary.low:.3f}, {summary.high:.3f}]"


@dataclass(frozen=True)
class Paired:
    n: int
    mean: float
    low: float
    high: float
    p: float

    def verdict(self, better: str, worse: str, same: str) -> str:
        """``better`` where the whole interval is above 0, ``worse`` below, else ``same``."""
        return better if self.low > 0 else worse if self.high < 0 else same


def paired_test(a: dict[Key, float], b: dict[Key, float]) -> Paired | None:
    """Paired t-test of ``a - b`` over the seeds both have (None below 2 pairs)."""
    diffs = [a[seed] - b[seed] for seed in a.keys() & b.keys()]
    summary = summarize(diffs)
    if summary is None or summary.std is None:
        return None
    if summary.std == 0:
        return Paired(summary.n, summary.mean, summary.mean, summary.mean, float(summary.mean == 0))
    from scipy import stats

    t = summary.mean / (summary.std / math.sqrt(summary.n))
    p = float(2 * stats.t.sf(abs(t), summary.n - 1))
    return Paired(summary.n, summary.mean, summary.low or 0.0, summary.high or 0.0, p)


# ---------------------------------------------------------------- the report


@dataclass
class Choice:
    """Per human budget: the best cell, the best mix and the human-only cell it is compared to."""

    budget: Any
    best: Cell | None
    best_mix: Cell | None
    human_only: Cell | None


def choose(grid: Grid, role: str, metric: str) -> list[Choice]:
    """Per budget, best cells on the validation mean (ties: first in grid order)."""
    choices = []
    for budget in grid.budgets():
        ranked = [c for c in grid.at_budget(budget) if c.mean(role, "val", metric) is not None]
        ranked.sort(key=lambda c: -(c.mean(role, "val", metric) or 0.0))
        mixes = [c for c in ranked if c.axes.get(RATIO, 1) != 0]
        best_mix = mixes[0] if mixes else None
        humans = ran_human_only(grid.at_budget(budget))
        twin = human_only_of(best_mix, humans) if best_mix else None
        human_only = twin or (humans or [None])[0]
        choices.append(Choice(budget, ranked[0] if ranked else None, best_mix, human_only))
    return choices


def matches(cell: Cell, other: Cell) -> bool:
    """Equal on every axis but the ratio and the generator's (``synthesize.*``: a sweep runs a
    human-only cell once, at its first temperature, for all of them)."""
    return all(
        v == other.axes.get(k)
        for k, v in cell.axes.items()
        if k != RATIO and not k.startswith("synthesize.")
    )


def conclusion(choice: Choice, role: str, metric: str) -> str:
    """One sentence computed from the numbers: does the best mix beat human-only on test?"""
    where = (
        f"Human budget {show(choice.budget)} per label"
        if choice.budget is not None
        else ("All human rows")
    )
    name = f"test {role} {METRIC_NAMES[metric]}"
    if choice.best_mix is None:
        return f"{where}: no cell with synthetic rows has a validation metric: cannot be decided."
    if choice.human_only is None:
        return (
            f"{where}: no human-only cell ({RATIO} 0) to compare `{choice.best_mix.label}` with:"
            " cannot be decided."
        )
    test = paired_test(
        choice.best_mix.by_seed(role, "test", metric),
        choice.human_only.by_seed(role, "test", metric),
    )
    pair = (
        f"best mix `{choice.best_mix.label}` (chosen on validation) vs human-only"
        f" `{choice.human_only.label}`"
    )
    if test is None:
        shared = len(
            choice.best_mix.by_seed(role, "test", metric).keys()
            & choice.human_only.by_seed(role, "test", metric).keys()
        )
        return (
            f"{where}: {pair}: cannot be decided, only {shared} paired training seed(s) with a"
            f" {name} (a paired test needs at least 2)."
        )
    verdict = test.verdict(
        "BEATS human-only beyond seed noise",
        "is WORSE than human-only beyond seed noise",
        "does NOT beat human-only beyond seed noise (the interval includes 0)",
    )
    return f"{where}: {pair}: the best mix {verdict} on {name}: {paired_numbers(test)}."


def paired_numbers(test: Paired) -> str:
    return (
        f"mean paired difference {test.mean:+.3f}, 95 % t-interval [{test.low:+.3f},"
        f" {test.high:+.3f}], p = {test.p:.3g} (paired t-test over {test.n} shared training seeds)"
    )


def temperature_conclusions(grid: Grid, role: str, metric: str) -> list[str]:
    """Where the grid has several temperatures: per budget and ratio > 0, the temperature best
    on validation against each other one, on test, paired over the training seeds."""
    if len(grid.axes.get(TEMPERATURE, [])) < 2:
        return []
    groups: dict[Key, list[Cell]] = {}
    for cell in grid.cells:
        if cell.axes.get(RATIO, 1) != 0 and cell.mean(role, "val", metric) is not None:
            rest = tuple((k, freeze(v)) for k, v in cell.axes.items() if k != TEMPERATURE)
            groups.setdefault(rest, []).append(cell)
    lines = []
    for cells in groups.values():
        best, *others = sorted(cells, key=lambda c: -(c.mean(role, "val", metric) or 0.0))
        where = (
            " ".join(f"{axis_name(k)}={show(v)}" for k, v in best.axes.items() if k != TEMPERATURE)
            or "every mix"
        )
        t_best = show(best.axes[TEMPERATURE])
        for other in others:
            t_other = show(other.axes[TEMPERATURE])
            test = paired_test(
                best.by_seed(role, "test", metric), other.by_seed(role, "test", metric)
            )
            pair = f"`{where}`: temperature {t_best} (chosen on validation) vs {t_other}"
            if test is None:
                lines.append(f"{pair}: cannot be decided (fewer than 2 paired training seeds).")
                continue
            verdict = test.verdict(
                f"{t_best} is BETTER beyond seed noise",
                f"{t_best} is WORSE beyond seed noise",
                "no difference beyond seed noise (the interval includes 0)",
            )
            name = f"test {role} {METRIC_NAMES[metric]}"
            lines.append(f"{pair}: {verdict} on {name}: {paired_numbers(test)}.")
    return lines


def mix_differences(grid: Grid, role: str, metric: str) -> list[str]:
    """Every mix cell minus its human-only cell on test, paired over the training seeds: what
    each ratio and temperature did, not a choice (nothing here is selected on validation)."""
    humans = ran_human_only(grid.cells)
    lines = []
    for cell in grid.cells:
        if cell.axes.get(RATIO, 0) == 0 or not cell.experiments:
            continue
        twin = human_only_of(cell, humans)
        if twin is None:
            continue
        test = paired_test(cell.by_seed(role, "test", metric), twin.by_seed(role, "test", metric))
        numbers = ["< 2", *[MISSING] * 4]
        if test:
            interval = f"[{test.low:+.3f}, {test.high:+.3f}]"
            verdict = test.verdict("better", "worse", "no")
            numbers = [str(test.n), f"{test.mean:+.3f}", interval, f"{test.p:.3g}", verdict]
        lines.append(row([f"`{cell.label}`", f"`{twin.label}`", *numbers]))
    if not lines:
        return []
    return [
        f"## Every mix against human-only (test {role} {METRIC_NAMES[metric]})",
        "",
        "Each mix cell minus the human-only cell of its budget, paired over training seeds."
        " These describe the grid: none is chosen on validation, and with many rows one may"
        " pass the 95 % bar by chance; the conclusion above is the test of the chosen mix.",
        "",
        row(DIFFERENCE_HEADER),
        row(["---"] * len(DIFFERENCE_HEADER)),
        *lines,
        "",
    ]


def present_roles(experiments: Iterable[Experiment]) -> list[str]:
    return [r for r in ROLES if any(r in e.metrics for e in experiments)]


def metric_table(
    grid: Grid, choices: list[Choice], roles: list[str], metric: str, mark_role: str
) -> list[str]:
    best = {id(c.best) for c in choices if c.best}
    header = ["", "cell", "n", *(f"{r} {s}" for r in roles for s in SPLITS)]
    lines = [f"### {METRIC_NAMES[metric]}", "", row(header), row(["---"] * len(header))]
    for cell in grid.cells:
        if not cell.experiments:
            lines.append(row(["", cell.label, "0", *["missing"] * (len(header) - 3)]))
            continue
        mark = "**best**" if id(cell) in best else ""
        stats = [
            fmt(cell.summary(r, s, metric)) + cell.one_class(r, s) for r in roles for s in SPLITS
        ]
        lines.append(row([mark, cell.label, str(len(cell.experiments)), *stats]))
    return [*lines, ""]


def row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def reference_table(
    experiments: Sequence[Experiment], choices: list[Choice], role: str, metric: str
) -> list[str]:
    header = [
        "reference",
        "budget",
        "n",
        f"val {METRIC_NAMES[metric]}",
        f"test {METRIC_NAMES[metric]}",
    ]
    lines = ["## Reference rows", "", row(header), row(["---"] * len(header))]
    for choice in choices:
        budget = show(choice.budget)
        for title, cell, model in (
            (f"human-only, {role}", choice.human_only, role),
            ("TF-IDF + LR on human-only rows", choice.human_only, "tfidf_lr"),
            ("TF-IDF + LR on the best mix's rows", choice.best_mix, "tfidf_lr"),
        ):
            if cell is None:
                lines.append(row([title, budget, "0", MISSING, MISSING]))
                continue
            stats = [fmt(cell.summary(model, s, metric)) for s in SPLITS]
            lines.append(
                row([f"{title} (`{cell.label}`)", budget, str(len(cell.experiments)), *stats])
            )
    # a split without a second rating on every row has none (ASAP-SAS: validation only)
    ceiling = {
        split: summarize(
            [v for e in experiments if (v := e.value("human_rater2", split, metric)) is not None]
        )
        for split in SPLITS
    }
    if any(ceiling.values()):
        n = max(c.n for c in ceiling.values() if c)
        shown = [fmt(c) if c else MISSING for c in ceiling.values()]
        lines.append(row(["human–human ceiling (rater 2 vs rater 1)", "–", str(n), *shown]))
    else:
        lines.append("")
        lines.append("No second human rater in these experiments: no human–human ceiling.")
    return [*lines, ""]


def mix_line(cell: Cell) -> str:
    rows = [e.mix for e in cell.experiments if e.mix]
    if not rows:
        return ""
    first = rows[0]
    return (
        f" Its training mix: {first.get('rows', MISSING)} rows, {first.get('human_rows', MISSING)}"
        f" human, {first.get('synthetic_rows', MISSING)} synthetic."
    )


# ---------------------------------------------------------------- plots


def figure() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6.4, 4.2))


def save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    for ax in fig.axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def line_groups(cells: Sequence[Cell], x_key: str) -> dict[str, list[Cell]]:
    """Cells grouped by every axis but ``x_key`` (one plotted line per group)."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        rest = Cell({k: v for k, v in cell.axes.items() if k != x_key}, [])
        groups.setdefault(rest.label, []).append(cell)
    return groups


def errorbar_line(
    ax: Any, xs: Sequence[float], cells: Sequence[Cell], label: str, get: Any
) -> None:
    points = [(x, s) for x, c in zip(xs, cells, strict=True) if (s := get(c)) is not None]
    if points:
        ax.errorbar(
            [x for x, _ in points],
            [s.mean for _, s in points],
            yerr=[s.std or 0.0 for _, s in points],
            marker="o",
            capsize=3,
            label=label,
        )


def positions(values: Sequence[Any]) -> tuple[list[float], list[str]]:
    """Numeric x positions for axis values (null and strings take the next slots)."""
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    xs = [float(v) for v in values] if numeric else [float(i) for i in range(len(values))]
    return xs, [show(v) for v in values]


def finish(
    fig: Any, out: Path, name: str, xs: list[float], ticks: list[str], x: str, y: str
) -> str:
    """Label the axes of a line plot, save it as ``out/name`` and return ``name``."""
    ax = fig.axes[0]
    ax.set_xticks(xs, ticks)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    save(fig, out / name)
    return name


def along(grid: Grid, key: str) -> dict[str, list[Cell]]:
    """One line per combination of the other axes: its cells in the order of ``key``'s values
    (along the ratio, each line starts at its human-only cell, whatever its temperature)."""
    empty = Cell({}, [])
    humans = ran_human_only(grid.cells)
    lines = {}
    for label, cells in line_groups(grid.cells, key).items():
        by_value = {c.axes.get(key): c for c in cells}
        if key == RATIO and 0 in grid.axes.get(RATIO, []) and 0 not in by_value:
            by_value[0] = next((h for h in humans if matches(h, cells[0])), empty)
        lines[label] = [by_value.get(v, empty) for v in grid.axes.get(key, [None])]
    return lines


def plot_metric_vs_ratio(out: Path, grid: Grid, role: str, metric: str) -> str:
    fig, ax = figure()
    xs, ticks = positions(grid.axes.get(RATIO, [None]))
    for label, cells in along(grid, RATIO).items():
        errorbar_line(ax, xs, cells, label, lambda c: c.summary(role, "test", metric))
    y = f"test {role} {METRIC_NAMES[metric]} (mean ± std over seeds)"
    return finish(fig, out, "metric_vs_ratio.png", xs, ticks, "synthetic ratio", y)


def plot_metric_vs_budget(out: Path, choices: list[Choice], role: str, metric: str) -> str:
    fig, ax = figure()
    xs, ticks = positions([c.budget for c in choices])
    for title, pick in (("human-only", "human_only"), ("best mix", "best_mix")):
        cells = [getattr(c, pick) or Cell({}, []) for c in choices]
        errorbar_line(ax, xs, cells, title, lambda c: c.summary(role, "test", metric))
    y = f"test {role} {METRIC_NAMES[metric]}"
    return finish(fig, out, "metric_vs_budget.png", xs, ticks, "human rows per label", y)


def plot_std_vs_temperature(out: Path, grid: Grid, role: str, metric: str) -> str:
    fig, ax = figure()
    xs, ticks = positions(grid.axes.get(TEMPERATURE, [None]))
    for label, cells in along(grid, TEMPERATURE).items():
        summaries = [c.summary(role, "test", metric) for c in cells]
        stds = [(x, s.std) for x, s in zip(xs, summaries, strict=True) if s and s.std is not None]
        if stds:
            ax.plot([x for x, _ in stds], [y for _, y in stds], marker="o", label=label)
    y = f"std over seeds of test {role} {METRIC_NAMES[metric]}"
    return finish(fig, out, "seed_std_vs_temperature.png", xs, ticks, "generation temperature", y)


def draw_confusion(ax: Any, rows: Any, labels: list[str], title: str) -> None:
    """A confusion matrix from dvclive's ``[{actual, predicted}]`` rows on ``ax``."""
    ax.set_title(title, fontsize="small")
    if not isinstance(rows, list) or not rows:
        ax.text(0.5, 0.5, "not recorded", ha="center", va="center")
        ax.set_axis_off()
        return
    pairs = Counter((str(r.get("actual")), str(r.get("predicted"))) for r in rows)
    seen = {x for pair in pairs for x in pair}
    order = [x for x in labels if x in seen] + sorted(seen - set(labels))
    counts = [[pairs[a, p] for p in order] for a in order]
    ax.imshow(counts, cmap="Blues")
    for i, line in enumerate(counts):
        for j, count in enumerate(line):
            ax.text(j, i, str(count), ha="center", va="center")
    ax.set_xticks(range(len(order)), order, rotation=30)
    ax.set_yticks(range(len(order)), order)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")


def plot_confusion(out: Path, rows: list[dict[str, Any]], labels: list[str], title: str) -> str:
    fig, ax = figure()
    draw_confusion(ax, rows, labels, title)
    save(fig, out / "confusion.png")
    return "confusion.png"


def plot_calibration(out: Path, bins: list[dict[str, Any]], title: str) -> str:
    fig, ax = figure()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    points = sorted((float(b["confidence"]), float(b["accuracy"])) for b in bins if b.get("count"))
    ax.plot([x for x, _ in points], [y for _, y in points], marker="o", label="model")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize="small")
    save(fig, out / "calibration.png")
    return "calibration.png"


def chosen_files(repo: Path, cell: Cell, role: str) -> tuple[Experiment, Any, Any]:
    """The first seed's experiment of ``cell``, its test confusion rows and calibration."""
    first = min(cell.experiments, key=lambda e: tuple(map(sort_key, e.seeds)))
    confusion, calibration = CONFUSION.format(role=role), CALIBRATION
    blobs = read_blobs(repo, [f"{first.commit}:{confusion}", f"{first.commit}:{calibration}"])
    rows = parse_json(first.name, confusion, blobs[f"{first.commit}:{confusion}"], required=False)
    calib = parse_json(first.name, calibration, blobs[f"{first.commit}:{calibration}"], False)
    return first, rows, calib


def write_plots(
    repo: Path, out: Path, grid: Grid, choices: list[Choice], role: str, metric: str
) -> list[str]:
    """Write the PNGs; return report.md's lines about them (a skipped plot says why)."""
    written = [plot_metric_vs_ratio(out, grid, role, metric)]
    notes = []
    if BUDGET in grid.axes:
        written.append(plot_metric_vs_budget(out, choices, role, metric))
    else:
        notes.append(f"metric vs human budget: skipped (`{BUDGET}` is not an axis).")
    written.append(plot_std_vs_temperature(out, grid, role, metric))
    top = next((c.best for c in choices if c.best), None)
    if top is None:
        notes.append("confusion matrix and calibration: skipped (no cell has a validation metric).")
    else:
        first, rows, calib = chosen_files(repo, top, role)
        where = f"`{top.label}`, experiment {first.name} (its first training seed), test split"
        if isinstance(rows, list) and rows:
            labels = [str(x) for x in first.params.get("data.labels") or ()]
            written.append(plot_confusion(out, rows, labels, f"{role}: {top.label}"))
            notes.append(f"confusion.png: the best cell's {role}, {where}.")
        else:
            notes.append(
                f"confusion matrix: skipped ({CONFUSION.format(role=role)} absent in {first.name})."
            )
        bins = calib.get(role, {}).get("test", {}).get("bins") if isinstance(calib, dict) else None
        if bins:
            ece = calib[role]["test"].get("ece")
            shown = MISSING if ece is None else f"{ece:.3f}"
            written.append(plot_calibration(out, bins, f"{role}: {top.label} (ECE {shown})"))
            notes.append(f"calibration.png: {where}; ECE {shown}.")
        else:
            notes.append(
                f"calibration curve: skipped (no {role} test bins in {CALIBRATION}"
                f" of {first.name})."
            )
    return [*(f"![{name}]({name})" for name in written), "", *(f"- {n}" for n in notes), ""]


def write_report(args: argparse.Namespace) -> Path:
    """Read the experiments, check them, write report.md and the plots; return report.md."""
    baselines, experiments = [], []
    for rev in args.rev or ["HEAD"]:
        baseline, found = load_experiments(Path(args.repo), rev)
        baselines.append(baseline[:7])
        experiments += found
    axes, waived = check_consistent(experiments, args.accept_code or ())
    grid = build_grid(experiments, axes)
    role, metric = args.role, args.metric
    choices = choose(grid, role, metric)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    roles = present_roles(experiments)
    missing = sum(1 for c in grid.cells if not c.experiments)
    seeds = [k for k in axes if k in SEED_KEYS]
    lines = [
        f"# Sweep report: baseline {', '.join(dict.fromkeys(baselines))}",
        "",
        f"{len(experiments)} experiment(s) in {len(grid.cells) - missing} of {len(grid.cells)}"
        f" grid cell(s){f' ({missing} missing)' if missing else ''}. Axes: "
        + (
            ", ".join(f"`{k}` {{{', '.join(map(show, v))}}}" for k, v in grid.axes.items())
            or "none"
        )
        + f"; seed axis: {', '.join(f'`{k}`' for k in seeds) or 'none'}.",
        "",
        *(
            [
                "**Code differs between these experiments** in "
                + ", ".join(f"`{p}`" for p in waived)
                + " (accepted with --accept-code: whoever ran the report vouches that the"
                " change cannot move a metric; `git diff` the baselines to check).",
                "",
            ]
            if waived
            else []
        ),
        "Each entry: mean ± std [95 % t-interval of the mean] over training seeds; n = seeds per"
        f" cell; {MISSING} = metric not recorded.",
        f"The best cell per human budget (**best**) has the highest VALIDATION mean {role}"
        f" {METRIC_NAMES[metric]}; test numbers never choose it. Role {role}"
        + (f": {ROLE_WHY}." if role == "teacher" else " (chosen with --role)."),
        "",
        "## Conclusion",
        "",
        *(f"- {conclusion(c, role, metric)}" for c in choices),
        *(f"- {line}" for line in temperature_conclusions(grid, role, metric)),
        "",
        "Test: paired t-test of the best mix minus human-only (or of the best temperature's"
        " cell minus another temperature's) over the training seeds both ran (same seeds in"
        ' both cells); "beats" or "better" only when the 95 % interval of the mean difference'
        " excludes 0.",
        "",
        *mix_differences(grid, role, metric),
        "## Cells",
        "",
    ]
    for name in (metric, *(m for m in METRICS if m != metric)):
        lines += metric_table(grid, choices, roles, name, role)
    lines += reference_table(experiments, choices, role, metric)
    lines += ["## Plots", "", *write_plots(Path(args.repo), out, grid, choices, role, metric)]
    best = [
        f"Best cell {'overall' if len(choices) == 1 else f'at human budget {show(c.budget)}'}:"
        f" `{c.best.label}`.{mix_line(c.best)}"
        for c in choices
        if c.best
    ]
    at = lines.index("## Cells")
    lines[at:at] = [x for line in best for x in (line, "")]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hybridscore report",
        description="Aggregate a sweep's experiments into reports/report.md and PNG plots.",
    )
    parser.add_argument(
        "--rev",
        action="append",
        help="baseline commit of the experiments (default HEAD); repeat it for a grid run from"
        " several commits, e.g. one temperature each: their code and data must match",
    )
    parser.add_argument(
        "--accept-code",
        action="append",
        metavar="PATH",
        help="a code path (prefix, e.g. src/hybridscore/llm) that may differ between the"
        " experiments, for a change known not to move any metric; the report names it",
    )
    parser.add_argument("--out", type=Path, default=Path("reports"), help="output folder")
    parser.add_argument("--metric", choices=METRICS, default="qwk", help="metric that chooses")
    parser.add_argument(
        "--role", choices=("teacher", "student"), default="teacher", help="model that chooses"
    )
    parser.add_argument("--repo", type=Path, default=Path("."), help="the git repository")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    def run() -> None:
        print(f"hybridscore report: wrote {write_report(args)}")

    run_stage("report", run)


if __name__ == "__main__":
    main()
