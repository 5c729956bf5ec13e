"""``hybridscore sweep GRID``: queue a grid of experiments, run it, and fail loudly if a cell fails.

A grid is a small YAML file (``configs/grids/*.yaml``)::

    name: paper                      # experiment names start with it
    target: evaluate                 # the stage each cell runs up to (skips the ONNX exports)
    jobs: 1                          # queue workers (`dvc queue start -j`)
    params: {distill.epochs: 4}      # fixed overrides for every cell
    axes:                            # every combination is one cell
      mix.synthetic_ratio: [0, 0.2, 0.4, 0.6, 0.8, 1.0]
      synthesize.temperature: [0.1, 0.3, 0.5, 0.7, 0.9]
      seed: [1, 2, 3]                # training seeds only (split/generation seeds stay)

Each cell is queued with ``dvc exp run --queue -n NAME -S key=value ... TARGET`` and the queue
is started with ``dvc queue start -j JOBS``. The command then waits for every cell, since
``dvc queue start`` returns at once and exits 0 whatever happens: a failed cell is printed with
its stage and last log lines, a queue whose worker died with cells still queued is restarted
(twice at most), workers left idle at the end are stopped (``dvc queue stop``), and the exit
status is 1 unless every cell succeeded. Cells that already have
an experiment of the same name on this commit are skipped, so rerunning a sweep resumes it.
A ratio-0 cell is queued with ``synthesize.responses_per_label=0``: human only, it sends no
request (unless the student distils on synthetic rows). ``synthesize.responses_per_label: auto``
(in ``params`` or an axis) asks, per human-label budget (``mix.human_per_label``), for what the
grid's largest ratio below 1 at that budget needs, divided by the share a generation must make
(``synthesize.min_fill``, or the backend's), so each budget pays for one generation that every
ratio's mix can take its rows from.
``--shard I/N`` runs every N-th cell (for several machines or a scheduler's array jobs) and
``--push REMOTE`` sends the finished experiments to a git remote (``dvc exp push``).
With more than one worker, two cells that write the same stage output at the same moment
(e.g. two seeds of a ratio-0 cell: the same mix) can trip a DVC race that fails one of them
("unable to remove … without a confirmation"); rerunning the sweep retries only that cell.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hybridscore.errors import HybridscoreError, run_stage
from hybridscore.llm import min_fill
from hybridscore.params import Params, load_params

Value = str | int | float | bool | None
STATUS_LINE = re.compile(r"^(?P<task>[0-9a-f]{7,})\s+(?P<name>\S+)\s+.*\s(?P<status>\w+)\s*$")
WORKERS_LINE = re.compile(r"Worker status: (?P<active>\d+) active, (?P<idle>\d+) idle")
UNFINISHED = {"Queued", "Running"}
NAME_CHARS = re.compile(r"[^A-Za-z0-9._=-]+")
SHORT_NAMES = {"synthetic_ratio": "ratio", "temperature": "temp", "human_per_label": "human"}
AUTO = "auto"  # synthesize.responses_per_label sized by the sweep
ROWS_ASKED = "synthesize.responses_per_label"


class Grid(BaseModel):
    """One grid file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    description: str = ""
    target: str | None = "evaluate"
    jobs: int = Field(default=1, ge=1, le=64)
    params: dict[str, Value] = {}
    axes: dict[str, list[Value]] = Field(min_length=1)

    @field_validator("axes")
    @classmethod
    def _axes_have_values(cls, axes: dict[str, list[Value]]) -> dict[str, list[Value]]:
        for key, values in axes.items():
            if not values or len(set(map(repr, values))) != len(values):
                raise ValueError(f"axis {key!r}: give one or more distinct values")
        return axes


@dataclass(frozen=True)
class Cell:
    name: str
    overrides: dict[str, Value]


def load_grid(path: Path) -> Grid:
    """Read and validate a grid file (one message naming the file and the bad key)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HybridscoreError(f"{path}: grid file not found") from None
    except yaml.YAMLError as exc:
        raise HybridscoreError(f"{path}: not valid YAML: {exc}") from None
    try:
        return Grid.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in exc.errors()
        )
        raise HybridscoreError(f"{path}: invalid grid: {problems}") from None


def yaml_value(value: Value) -> str:
    """A value as ``dvc exp run -S`` reads it (YAML)."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def short_name(key: str) -> str:
    """``mix.synthetic_ratio`` -> ``ratio``: the part of a cell's name that names an axis."""
    last = key.rsplit(".", 1)[-1]
    return SHORT_NAMES.get(last, last)


def human_only(overrides: dict[str, Value], transfer_synthetic: bool) -> dict[str, Value]:
    """A ratio-0 cell uses no synthetic row: it asks for none (no request, no model loaded),
    unless the student distils on synthetic rows (``distill.transfer_unused_synthetic``)."""
    transfer = overrides.get("distill.transfer_unused_synthetic", transfer_synthetic)
    if overrides.get("mix.synthetic_ratio") == 0 and not transfer:
        return {**overrides, "synthesize.responses_per_label": 0}
    return overrides


def cells(grid: Grid, defaults: Params) -> list[Cell]:
    """Every combination of the axes, in file order, each named after its axis values;
    ``defaults``: params.yaml (the values a cell does not override).

    A human-only cell (one that asks for no synthetic row) is the same training whatever its
    ``synthesize.*`` values, so it is kept once: the first in order (``report`` compares
    every temperature's mixes with it). ``synthesize.responses_per_label: auto`` is then
    replaced by a count (``auto_rows_asked``)."""
    transfer_synthetic = defaults.distill.transfer_unused_synthetic
    keys = list(grid.axes)
    found, trainings = [], set()
    for values in itertools.product(*(grid.axes[k] for k in keys)):
        chosen = dict(zip(keys, values, strict=True))
        parts = [f"{short_name(key)}{yaml_value(v)}" for key, v in chosen.items()]
        name = NAME_CHARS.sub("_", "-".join([grid.name, *parts]))
        overrides = human_only({**grid.params, **chosen}, transfer_synthetic)
        if overrides.get(ROWS_ASKED) == 0:
            training = tuple(
                (k, yaml_value(v)) for k, v in overrides.items() if not k.startswith("synthesize.")
            )
            if training in trainings:
                continue
            trainings.add(training)
        found.append(Cell(name, overrides))
    return auto_rows_asked(found, defaults)


def auto_rows_asked(found: list[Cell], defaults: Params) -> list[Cell]:
    """Each ``responses_per_label: auto`` as the rows per label that the largest ratio below 1
    among the cells of the same budget needs (the budget itself where every ratio is 1),
    divided by ``min_fill``: one generation per budget serves every ratio's mix."""

    def value(cell: Cell, key: str) -> Value:
        section, field = key.split(".")
        return cell.overrides.get(key, getattr(getattr(defaults, section), field))

    auto = [cell for cell in found if cell.overrides.get(ROWS_ASKED) == AUTO]
    for cell in auto:
        if value(cell, "mix.human_per_label") is None:
            raise HybridscoreError(
                f"cell {cell.name}: {ROWS_ASKED}: auto sizes the generation from "
                "mix.human_per_label, which is null there; set a budget or give a number"
            )
    largest: dict[Value, float] = {}
    for cell in auto:
        budget, ratio = value(cell, "mix.human_per_label"), value(cell, "mix.synthetic_ratio")
        if ratio < 1:
            largest[budget] = max(largest.get(budget, 0.0), ratio)
    sized = []
    for cell in found:
        if cell.overrides.get(ROWS_ASKED) == AUTO:
            budget = value(cell, "mix.human_per_label")
            ratio = largest.get(budget)
            need = budget if ratio is None else budget * ratio / (1 - ratio)
            synthesize = {
                k.removeprefix("synthesize."): v
                for k, v in cell.overrides.items()
                if k.startswith("synthesize.") and k != ROWS_ASKED
            }
            fill = min_fill(defaults.synthesize.model_copy(update=synthesize))
            rows = math.ceil(round(need / fill, 6)) if fill > 0 else math.ceil(need)
            cell = Cell(cell.name, {**cell.overrides, ROWS_ASKED: rows})
        sized.append(cell)
    return sized


def shard(all_cells: list[Cell], spec: str | None) -> list[Cell]:
    """``I/N`` (1-based): every N-th cell starting at the I-th."""
    if spec is None:
        return all_cells
    match = re.fullmatch(r"(\d+)/(\d+)", spec)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise HybridscoreError(f"--shard {spec!r}: expected I/N with 1 <= I <= N, e.g. 1/4")
    index, count = int(match[1]), int(match[2])
    return all_cells[index - 1 :: count]


class Dvc:
    """The ``dvc`` and ``git`` commands a sweep runs, with the venv's tools first on PATH."""

    def __init__(self, root: Path) -> None:
        self.root = root
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.env.setdefault("DVC_NO_ANALYTICS", "1")

    def run(self, *args: str, check: bool = True) -> str:
        """The command's stdout; its output goes through files, not pipes: a process it
        leaves behind (``dvc queue start``'s workers) holds a pipe open, and reading one would
        wait until that process exits."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            done = subprocess.run(
                args, cwd=self.root, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=err, check=False,
            )  # fmt: skip
            out.seek(0)
            err.seek(0)
            stdout, stderr = (f.read().decode(errors="replace") for f in (out, err))
        if check and done.returncode != 0:
            raise HybridscoreError(
                f"`{' '.join(args)}` exited with {done.returncode}: "
                f"{(stderr or stdout).strip()[-2000:]}"
            )
        return stdout

    def start_queue(self, jobs: int) -> None:
        """``dvc queue start -j JOBS``: returns once the workers are spawned (see :meth:`run`)."""
        self.run("dvc", "queue", "start", "-j", str(jobs))

    def head(self) -> str:
        return self.run("git", "rev-parse", "HEAD").strip()

    def finished_experiments(self, baseline: str) -> set[str]:
        """Names of the experiments already saved on top of ``baseline``."""
        prefix = f"refs/exps/{baseline[:2]}/{baseline[2:]}/"
        refs = self.run("git", "for-each-ref", "--format=%(refname)", prefix)
        return {ref.removeprefix(prefix) for ref in refs.split()}

    def queue_status(self) -> tuple[dict[str, str], int]:
        """``{experiment name: status}`` and the number of live queue workers."""
        out = self.run("dvc", "queue", "status")
        statuses = {m["name"]: m["status"] for m in map(STATUS_LINE.match, out.splitlines()) if m}
        workers = WORKERS_LINE.search(out)
        return statuses, (int(workers["active"]) + int(workers["idle"])) if workers else 0

    def last_log_lines(self, name: str, lines: int = 12) -> tuple[str, list[str]]:
        """The stage a failed experiment stopped in, and the end of its log."""
        log = self.run("dvc", "queue", "logs", name, check=False).splitlines()
        failed = [m[1] for m in (re.search(r"failed to reproduce '([^']+)'", x) for x in log) if m]
        return (failed[-1] if failed else "?"), log[-lines:]


def check_committed(dvc: Dvc) -> None:
    """Queued experiments see only committed files: refuse to queue beside untracked code."""
    untracked = dvc.run(
        "git", "ls-files", "--others", "--exclude-standard", "--", "src", "configs", "dvc.yaml"
    ).split()
    if untracked:
        raise HybridscoreError(
            f"untracked files that queued experiments would not see: {', '.join(untracked[:5])}"
            " (git add + commit them first)"
        )


def queue(dvc: Dvc, grid: Grid, todo: list[Cell]) -> None:
    statuses, _ = dvc.queue_status()
    for cell in todo:
        if cell.name in statuses:  # a failed or stale entry of an earlier sweep
            dvc.run("dvc", "queue", "remove", cell.name, check=False)
        args = ["dvc", "exp", "run", "--queue", "-n", cell.name]
        for key, value in cell.overrides.items():
            args += ["-S", f"{key}={yaml_value(value)}"]
        dvc.run(*args, *([grid.target] if grid.target else []))


def wait(dvc: Dvc, names: list[str], jobs: int, poll_s: float, stall_s: float) -> dict[str, str]:
    """Start the queue and wait until no cell is queued or running; restart a dead queue.

    A queue is dead when no worker answers for ``stall_s`` (10x that while a cell is running);
    workers left idle once every cell is done are stopped, so the command leaves none behind.
    """
    dvc.start_queue(jobs)
    restarts, idle_since = 0, None
    while True:
        time.sleep(poll_s)
        statuses, workers = dvc.queue_status()
        ours = {name: statuses.get(name, "Missing") for name in names}
        unfinished = [name for name, status in ours.items() if status in UNFINISHED]
        if not unfinished:
            if workers and not UNFINISHED.intersection(statuses.values()):
                dvc.run("dvc", "queue", "stop", check=False)
            return ours
        if workers:
            idle_since = None
            continue
        idle_since = idle_since or time.monotonic()
        # a worker busy with a cell may miss a status ping: a running cell gets 10x longer
        patience = stall_s * (10 if "Running" in ours.values() else 1)
        if time.monotonic() - idle_since < patience:
            continue
        if restarts == 2:
            raise HybridscoreError(
                f"the queue has no worker and {len(unfinished)} cell(s) are still queued or "
                f"running ({', '.join(unfinished[:5])}) after {restarts} restarts; see "
                "`dvc queue status` (`dvc queue kill` a cell whose worker died)"
            )
        print(f"sweep: no queue worker alive with {len(unfinished)} cell(s) left; restarting")
        restarts, idle_since = restarts + 1, None
        dvc.start_queue(jobs)


def sweep(args: argparse.Namespace) -> None:
    grid = load_grid(args.grid)
    todo_all = shard(cells(grid, load_params()), args.shard)
    dvc = Dvc(Path.cwd())
    baseline = dvc.head()
    done = dvc.finished_experiments(baseline)
    todo = [cell for cell in todo_all if cell.name not in done]
    print(f"sweep {grid.name}: {len(todo_all)} cell(s), {len(todo_all) - len(todo)} already done")
    if args.dry_run:
        for cell in todo:
            print(f"  {cell.name}: {cell.overrides}")
        return
    if todo:
        check_committed(dvc)
        queue(dvc, grid, todo)
        outcome = wait(dvc, [c.name for c in todo], args.jobs or grid.jobs, args.poll_s, 60.0)
        failed = {name: status for name, status in outcome.items() if status != "Success"}
        for name, status in failed.items():
            stage, lines = dvc.last_log_lines(name)
            print(f"FAILED {name} ({status}) in stage {stage!r}:", file=sys.stderr)
            print("    " + "\n    ".join(lines), file=sys.stderr)
        if failed:
            print(
                f"hybridscore sweep: {len(failed)} of {len(todo)} cell(s) failed: "
                f"{', '.join(failed)} (rerun the same command to retry only those)",
                file=sys.stderr,
            )
            sys.exit(1)
    if args.push:
        names = [cell.name for cell in todo_all]
        dvc.run("dvc", "exp", "push", args.push, *names)
        print(f"sweep {grid.name}: pushed {len(names)} experiment(s) to {args.push}")
    print(f"sweep {grid.name}: all {len(todo_all)} cell(s) done")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hybridscore sweep",
        description=__doc__.split("\n\n")[0],
        epilog="Grid files: configs/grids/*.yaml (see docs/experiments.md).",
    )
    parser.add_argument("grid", type=Path, help="grid file, e.g. configs/grids/smoke.yaml")
    parser.add_argument("--jobs", "-j", type=int, default=None, help="queue workers (grid's)")
    parser.add_argument("--shard", default=None, help="I/N: run every N-th cell from the I-th")
    parser.add_argument("--push", default=None, help="git remote to `dvc exp push` the cells to")
    parser.add_argument("--dry-run", action="store_true", help="list the cells, queue nothing")
    parser.add_argument("--poll-s", type=float, default=5.0, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)

    def run() -> None:
        sweep(args)

    run_stage("sweep", run)


if __name__ == "__main__":
    main()
