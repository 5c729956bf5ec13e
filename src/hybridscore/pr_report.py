"""``hybridscore pr-report``: one Markdown file comparing the workspace (a pull request's head)
with a base commit, for review.

Sections, in order: ``dvc params diff BASE --md``; EVERY quality metric of the teacher, the
student and the INT8 scorer on val and test (from ``dvc metrics diff BASE --all --json``),
changed or not, at fixed precision; the operational counters of ``metrics/*.json`` (BASE read
with ``git show``) only where they moved beyond the noise rule stated in the file; the synthesis
composition and cost; and PNG plots (matplotlib Agg, offline) of the head next to BASE's.
Needs nothing but the git repository (the metrics and plot files are git-tracked); a metric or
file missing at BASE is shown as new.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from hybridscore.errors import HybridscoreError, run_stage
from hybridscore.report import (
    CONFUSION,
    EVALUATE_METRICS,
    INT8_METRICS,
    METRIC_NAMES,
    METRICS,
    MISSING,
    ROLES,
    SPLITS,
    draw_confusion,
    git,
    read_blobs,
    row,
    save,
)

INT8_CONFUSION = "dvclive/evaluate_int8/plots/sklearn/confusion_int8_test.json"
QUALITY_FILES = (EVALUATE_METRICS, INT8_METRICS)
OPERATIONAL_FILES = tuple(
    f"metrics/{stage}.json"
    for stage in (
        "prepare",
        "synthesize",
        "mix",
        "train_teacher",
        "distill",
        "export",
        "export_teacher",
    )
)
SYNTHESIZE = "metrics/synthesize.json"
CURVES = {
    "train_teacher": "dvclive/train_teacher/plots/metrics",
    "distill": "dvclive/distill/plots/metrics",
}
NOISE = 0.25
NOISY_WORDS = ("per_second", "memory", "_mb", "seconds", "time", "latency", "logit")
SYNTHESIS_KEYS = (
    "backend",
    "model",
    "rows",
    "rows_per_label",
    "requests_planned",
    "requests_sent",
    "cache_hits",
    "failed_requests",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "budget_exhausted",
    "duplicates_removed",
    "rejections",
)
NOISE_RULE = (
    f"Noise rule: a counter whose name contains {', '.join(f'`{w}`' for w in NOISY_WORDS)}"
    f" (throughput, time, memory, file size, numerical error) is shown when it moved more than"
    f" ±{NOISE:.0%} of its BASE value; every other counter (counts, fractions, flags, names) on"
    " any change; a counter equal at BASE and HEAD (e.g. 0 → 0) never; one missing at BASE is"
    " shown as new, one gone at HEAD as removed."
)
Leaf = str | int | float | bool | None


# ---------------------------------------------------------------- reading BASE and HEAD


def dvc(repo: Path, *args: str) -> str:
    """Run ``dvc``; a failure becomes one ``HybridscoreError``."""
    done = subprocess.run(["dvc", *args], cwd=repo, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise HybridscoreError(f"`dvc {' '.join(args)}` failed: {done.stderr.strip()}")
    return done.stdout


def parse(path: str, blob: bytes | None) -> Any:
    """A JSON file's content, or None when the file is absent."""
    if blob is None:
        return None
    try:
        return json.loads(blob)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HybridscoreError(f"{path} is unreadable: {exc}") from None


class Sides:
    """Files at BASE (from git) and at HEAD (the workspace)."""

    def __init__(self, repo: Path, base: str) -> None:
        self.repo = repo
        self.base = git(repo, "rev-parse", "--verify", f"{base}^{{commit}}").decode().strip()

    def base_blobs(self, paths: Sequence[str]) -> dict[str, bytes | None]:
        blobs = read_blobs(self.repo, [f"{self.base}:{p}" for p in paths])
        return {p: blobs[f"{self.base}:{p}"] for p in paths}

    def head_blob(self, path: str) -> bytes | None:
        file = self.repo / path
        return file.read_bytes() if file.is_file() else None

    def json_pair(self, path: str) -> tuple[Any, Any]:
        return parse(path, self.base_blobs([path])[path]), parse(path, self.head_blob(path))

    def base_files(self, folder: str) -> list[str]:
        listed = git(self.repo, "ls-tree", "-r", "--name-only", self.base, "--", folder)
        return listed.decode().split()

    def head_files(self, folder: str) -> list[str]:
        root = self.repo / folder
        return sorted(p.relative_to(self.repo).as_posix() for p in root.rglob("*") if p.is_file())


def flat_leaves(value: Any, prefix: str = "") -> dict[str, Leaf]:
    """Nested JSON as ``{"a.b.c": leaf}`` (a list becomes one comma-joined string)."""
    if isinstance(value, dict):
        found: dict[str, Leaf] = {}
        for key, inner in value.items():
            found.update(flat_leaves(inner, f"{prefix}{key}."))
        return found
    if isinstance(value, list):
        value = ", ".join(map(str, value))
    return {prefix.rstrip("."): value}


# ---------------------------------------------------------------- quality metrics


def quality_values(repo: Path, base: str) -> dict[tuple[str, str, str], tuple[Any, Any]]:
    """``(role, split, metric) -> (BASE value, HEAD value)`` from ``dvc metrics diff``."""
    diff = json.loads(
        dvc(repo, "metrics", "diff", base, "--all", "--json", "--targets", *QUALITY_FILES) or "{}"
    )
    found = {}
    for entries in diff.values():
        for key, entry in entries.items():
            parts = key.split(".")
            if len(parts) == 3:
                found[tuple(parts)] = (entry.get("old"), entry.get("new"))
    return found


def number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def quality_section(values: dict[tuple[str, str, str], tuple[Any, Any]]) -> list[str]:
    extra = sorted({role for role, _, _ in values} - set(ROLES))
    header = ["model", "split", "metric", "BASE", "HEAD", "change"]
    lines = ["## Quality metrics (every one, 3 decimals)", "", row(header), row(["---"] * 6)]
    unrecorded = []
    for role in (*ROLES, *extra):
        if not any(r == role for r, _, _ in values):
            unrecorded.append(role)
            continue
        for split in SPLITS:
            for metric in METRICS:
                old, new = (number(v) for v in values.get((role, split, metric), (None, None)))
                if old is None and new is None:
                    continue
                change = (
                    f"{new - old:+.3f}"
                    if old is not None and new is not None
                    else "new"
                    if new is not None
                    else "removed"
                )
                cells = [role, split, METRIC_NAMES[metric], fmt3(old), fmt3(new), change]
                lines.append(row(cells))
    if unrecorded:
        lines += ["", f"Not recorded at BASE or HEAD: {', '.join(unrecorded)}."]
    return [*lines, ""]


def fmt3(value: float | None) -> str:
    return MISSING if value is None else f"{value:.3f}"


# ---------------------------------------------------------------- operational counters


def is_noisy(key: str) -> bool:
    return any(word in key for word in NOISY_WORDS)


def moved(key: str, old: Leaf, new: Leaf) -> str | None:
    """The change column for a counter that moved beyond the noise rule, else None."""
    if old == new:
        return None
    a, b = number(old), number(new)
    if a is None or b is None:
        return "new" if old is None else "removed" if new is None else "changed"
    if is_noisy(key):
        if a != 0 and abs(b - a) <= NOISE * abs(a):
            return None
        return f"{(b - a) / a:+.0%}" if a else "from 0"
    return f"{b - a:+.4g}"


def show_leaf(value: Leaf) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def operational_section(sides: Sides) -> list[str]:
    base = sides.base_blobs(OPERATIONAL_FILES)
    rows = []
    for path in OPERATIONAL_FILES:
        old = flat_leaves(parse(path, base[path]) or {})
        new = flat_leaves(parse(path, sides.head_blob(path)) or {})
        for key in sorted(old.keys() | new.keys()):
            change = moved(key, old.get(key), new.get(key))
            if change is not None:
                rows.append(
                    row([path, key, show_leaf(old.get(key)), show_leaf(new.get(key)), change])
                )
    lines = ["## Operational counters that moved", "", NOISE_RULE, ""]
    if not rows:
        return [*lines, "None moved beyond the noise rule.", ""]
    header = ["file", "counter", "BASE", "HEAD", "change"]
    return [*lines, row(header), row(["---"] * 5), *rows, ""]


def synthesis_section(sides: Sides) -> list[str]:
    old, new = (v or {} for v in sides.json_pair(SYNTHESIZE))
    lines = [f"## Synthesis: composition and cost (`{SYNTHESIZE}`)", ""]
    if not old and not new:
        return [*lines, f"No {SYNTHESIZE} at BASE or HEAD.", ""]
    lines += [row(["", "BASE", "HEAD"]), row(["---"] * 3)]
    for key in SYNTHESIS_KEYS:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) or isinstance(b, dict):
            a, b = compact(a), compact(b)
        lines.append(row([key, show_leaf(a), show_leaf(b)]))
    return [*lines, ""]


def compact(value: Any) -> str | None:
    """``{"a": 1, "b": 2}`` as ``a 1, b 2`` (a table cell)."""
    if value is None:
        return None
    return ", ".join(f"{k} {show_leaf(v)}" for k, v in sorted(value.items())) or "none"


# ---------------------------------------------------------------- plots


def subplots(columns: int, rows: int = 1) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.6 * rows), squeeze=False)
    return fig, [ax for line in axes for ax in line]


def confusion_plots(sides: Sides, out: Path, labels: list[str]) -> list[str]:
    written = []
    for role in ROLES:
        path = INT8_CONFUSION if role == "int8" else CONFUSION.format(role=role)
        old, new = sides.json_pair(path)
        if old is None and new is None:
            continue
        fig, (left, right) = subplots(2)
        draw_confusion(left, old, labels, f"BASE {sides.base[:7]}: {role}, test")
        draw_confusion(right, new, labels, f"HEAD: {role}, test")
        name = f"confusion_{role}_test.png"
        save(fig, out / name)
        written.append(name)
    return written


def read_curve(blob: bytes | None) -> tuple[list[float], list[float]]:
    """``(steps, values)`` of a dvclive ``step<TAB>name`` TSV."""
    if blob is None:
        return [], []
    rows = list(csv.reader(io.StringIO(blob.decode()), delimiter="\t"))[1:]
    return [float(r[0]) for r in rows if len(r) > 1], [float(r[1]) for r in rows if len(r) > 1]


def curve_plots(sides: Sides, out: Path) -> list[str]:
    written = []
    for stage, folder in CURVES.items():
        files = sorted(set(sides.base_files(folder)) | set(sides.head_files(folder)))
        files = [f for f in files if f.endswith(".tsv")]
        if not files:
            continue
        base = sides.base_blobs(files)
        columns = min(3, len(files))
        fig, axes = subplots(columns, math.ceil(len(files) / columns))
        for ax, path in zip(axes, files, strict=False):
            for side, blob, style in (
                ("BASE", base[path], "--"),
                ("HEAD", sides.head_blob(path), "-"),
            ):
                steps, values = read_curve(blob)
                if steps:
                    ax.plot(steps, values, style, marker="o", markersize=3, label=side)
            ax.set_title(path.removeprefix(f"{folder}/").removesuffix(".tsv"), fontsize="small")
            ax.set_xlabel("step")
        for ax in axes[len(files) :]:
            ax.set_axis_off()
        name = f"curves_{stage}.png"
        save(fig, out / name)
        written.append(name)
    return written


def plots_section(sides: Sides, out: Path, run_url: str | None) -> list[str]:
    params = yaml.safe_load(sides.head_blob("params.yaml") or b"{}") or {}
    labels = [str(x) for x in (params.get("data") or {}).get("labels") or []]
    names = [*confusion_plots(sides, out, labels), *curve_plots(sides, out)]
    lines = ["## Plots (HEAD next to BASE)", ""]
    if not names:
        return [*lines, "No confusion matrices or training curves at BASE or HEAD.", ""]
    if run_url:
        listed = ", ".join(f"`{n}`" for n in names)
        return [
            *lines,
            f"The PNGs ({listed}) are in the `pr-report` artifact of [this workflow run]"
            f"({run_url}): nothing is committed and no external image host is used.",
            "",
        ]
    return [*lines, *(f"![{n}]({n})" for n in names), ""]


# ---------------------------------------------------------------- the report


def default_run_url() -> str | None:
    """The GitHub Actions run's page, when running there."""
    keys = ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")
    if not all(os.environ.get(k) for k in keys):
        return None
    server, repo, run_id = (os.environ[k] for k in keys)
    return f"{server}/{repo}/actions/runs/{run_id}"


def write_pr_report(args: argparse.Namespace) -> Path:
    """Write ``args.out/report.md`` and its PNGs; return the Markdown file."""
    repo, out = Path(args.repo), Path(args.out)
    sides = Sides(repo, args.base)
    params = dvc(repo, "params", "diff", args.base, "--md").strip()
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Pull-request report: HEAD (workspace) vs BASE `{args.base}` ({sides.base[:7]})",
        "",
        "## Params that changed (`dvc params diff`)",
        "",
        params or "No param changed.",
        "",
        *quality_section(quality_values(repo, args.base)),
        *operational_section(sides),
        *synthesis_section(sides),
        *plots_section(sides, out, args.run_url),
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hybridscore pr-report",
        description="Compare the workspace's params, metrics and plots with BASE (one .md file).",
    )
    parser.add_argument("--base", default="main", help="the commit to compare with")
    parser.add_argument("--out", type=Path, default=Path("reports/pr"), help="output folder")
    parser.add_argument("--repo", type=Path, default=Path("."), help="the git + DVC repository")
    parser.add_argument(
        "--run-url",
        default=default_run_url(),
        help="link the plots to this CI run's artifact instead of embedding them"
        " (default: the GitHub Actions run, when there)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    run_stage("pr-report", lambda: print(f"hybridscore pr-report: wrote {write_pr_report(args)}"))


if __name__ == "__main__":
    main()
