"""Stage ``synthesize``: ask an LLM for new scored responses, built from the train split only.

Reads the prepared train split (prompts: with ``mix.human_per_label`` set, only the budget's
rows, the ones ``mix`` trains on) and labels; writes the synthetic rows, the durable reply
cache and the stage metrics. Validation and test rows never reach a prompt: they are read to
drop generated copies of them and for the contamination report. Replies are looked up in the
workspace cache, then in the store shared by every workspace of the repository
(``$DVC_ROOT/.dvc/tmp/llm-replies``), and only then asked for; a human-only experiment
(``mix.synthetic_ratio`` 0, no transfer of unused synthetic rows) asks for nothing.

    python -m hybridscore.synthesize [--dry-run] [--no-progress] [--train PATH] ...
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hybridscore.data import human_budget, read_labels, read_table, write_json, write_table
from hybridscore.errors import HybridscoreError, run_stage
from hybridscore.leakage import audit_index
from hybridscore.llm import (
    Budget,
    Engine,
    EngineStats,
    ReplyCache,
    SharedReplies,
    asked_before,
    backend_class,
    make_backend,
    min_fill,
    price_table,
)
from hybridscore.llm.tokens import PriceTable, estimate_prompt_tokens, estimate_tokens
from hybridscore.params import Params, SynthesizeParams, load_params
from hybridscore.synth.grade import MAX_GRADING_PASSES, grade, judge_reply
from hybridscore.synth.plan import Planner, Slot
from hybridscore.synth.prompt import load_template
from hybridscore.synth.select import COLUMNS, Selection, select_rows
from hybridscore.synth.textfilters import DuplicateIndex, contamination

DEFAULT_TEMPLATE = SynthesizeParams.model_fields["prompt_template"].default
# for small local models on long questions (see its header)
EXAMPLES_TEMPLATE = str(Path(DEFAULT_TEMPLATE).with_name("generate_responses_examples.txt"))

CACHE_README = """LLM reply cache of the hybridscore synthesize stage (a DVC output, persist: true).
replies/*.jsonl: append-only shards, one JSON object per accepted reply, keyed by a sha256 of
everything that determined the request. batches/*.json: submitted Batch API jobs (resume).
Share it with `dvc push` / `dvc pull`; never edit shards by hand (delete one to re-ask).
"""
SHARED_STORE = Path(".dvc/tmp/llm-replies")  # under $DVC_ROOT: every workspace of the repo
HUMAN_BASELINE = ("rows_with_overlap_fraction", "exact_matches", "ngram_overlap_fraction")


@dataclass(frozen=True)
class Paths:
    """The stage's files (dvc.yaml passes them; the defaults are the pipeline's)."""

    train: Path = Path("data/prepared/train.csv")
    labels: Path = Path("data/prepared/labels.json")
    val: Path = Path("data/prepared/val.csv")  # read only to drop copies and report overlap
    test: Path = Path("data/prepared/test.csv")  # likewise
    cache: Path = Path("data/llm_cache")
    out: Path = Path("data/synthetic/rows.csv")
    metrics: Path = Path("metrics/synthesize.json")


@dataclass
class Synthesis:
    """Everything one run needs, built from params and the training data."""

    params: SynthesizeParams
    train: pd.DataFrame
    labels: list[str]
    planner: Planner
    held_out: dict[str, list[str]] = field(default_factory=dict)  # val/test texts, no prompt

    def held_out_index(self) -> DuplicateIndex:
        """Every val/test text, as the leakage audit matches against them."""
        return audit_index(text for texts in self.held_out.values() for text in texts)

    @classmethod
    def load(cls, paths: Paths, all_params: Params) -> Synthesis:
        params = all_params.synthesize
        labels = load_labels(paths)
        train = read_table(paths.train)
        for column in ("question", "reference"):
            if column not in train:
                train[column] = ""
        unknown = sorted(set(train["label"]) - set(labels))
        if unknown:
            raise HybridscoreError(f"{paths.train}: labels {unknown} are not in {paths.labels}")
        grader = load_template(params.grade_template) if params.consistency_filter else None
        template = load_template(params.prompt_template)
        backend = backend_class(params.backend)
        if template.reply and not backend.prefill:
            raise HybridscoreError(
                f"{params.prompt_template}: its [reply] section (a reply prefill) works with "
                f"the local backend only, not synthesize.backend {params.backend!r}; use a "
                f"template without it (e.g. {DEFAULT_TEMPLATE})"
            )
        budget = all_params.mix  # prompts see only the human rows `mix` may train on; the
        # duplicate filters still compare with every training text
        planner = Planner(
            human_budget(train, budget.human_per_label, budget.seed),
            labels,
            params,
            params.seed,
            template,
            grader,
            structured=backend.structured_outputs,
        )
        return cls(params, train, labels, planner, read_held_out(paths))


def read_held_out(paths: Paths) -> dict[str, list[str]]:
    """The validation and test texts, by split (a split whose file is absent is left out)."""
    splits = (("val", paths.val), ("test", paths.test))
    return {split: read_table(path)["text"].tolist() for split, path in splits if path.exists()}


def load_labels(paths: Paths) -> list[str]:
    if not paths.labels.exists():
        raise HybridscoreError(f"{paths.labels}: not found (run the prepare stage first)")
    return read_labels(paths.labels)


def shared_store(environ: dict[str, str] | None = None) -> SharedReplies | None:
    """The reply store every workspace of this repository shares, if DVC runs the stage.

    DVC sets ``DVC_ROOT`` to the main repository, also in a queued experiment's temporary
    workspace, so siblings of a sweep meet there; a stage run by hand uses its cache only.
    """
    root = (os.environ if environ is None else environ).get("DVC_ROOT")
    if not root or not (Path(root) / ".dvc").is_dir():
        return None
    return SharedReplies(Path(root) / SHARED_STORE)


def skip_reason(all_params: Params) -> str | None:
    """Why nothing is to be generated (None: rows are asked for). A human-only experiment
    sets ``responses_per_label: 0`` (``hybridscore sweep`` does so for ratio-0 cells), so it
    sends no request and loads no model; the stage reads no other section's params, so a
    change of the mix or of training reuses the generation as it is."""
    if all_params.synthesize.responses_per_label == 0:
        return "synthesize.responses_per_label is 0 (a human-only experiment)"
    return None


def dry_run(synthesis: Synthesis, cache_dir: Path, shared: SharedReplies | None) -> None:
    """Print requests, estimated tokens and cost without calling anything."""
    params = synthesis.params
    slots = synthesis.planner.base_slots()
    with ReplyCache(cache_dir, shared=shared) as cache:
        todo = [
            s.request
            for s in slots
            if s.request.key not in cache
            and asked_before(cache, s.request.key, params.max_reasks)[0] <= params.max_reasks
        ]
    prompt_tokens = sum(estimate_prompt_tokens(r) for r in todo)
    mean_answer = (
        synthesis.train["text"].map(estimate_tokens).mean() if len(synthesis.train) else 20
    )
    # a reply never exceeds its token cap, so neither does its estimate
    expected_out = sum(
        min(r.n * (r.count * (mean_answer + 4) + 12), r.n * r.max_tokens) for r in todo
    )
    max_out = sum(r.n * r.max_tokens for r in todo)
    price = price_table(params)
    lines = [
        f"backend {params.backend}, model {params.model}",
        f"requests planned: {len(slots)} ({len(slots) - len(todo)} cached, {len(todo)} to send; "
        f"top-up rounds may add up to {params.topup_rounds} more rounds)",
        f"estimated prompt tokens: {prompt_tokens:,}",
        f"estimated completion tokens: {round(expected_out):,} (at most {max_out:,})",
    ]
    if price is None:
        lines.append(
            f"estimated cost: unknown (no price for {params.model!r} in synthesize.prices)"
        )
    else:
        lines.append(
            f"estimated cost: ${price.cost(prompt_tokens, expected_out):.4f} "
            f"(at most ${price.cost(prompt_tokens, max_out):.4f})"
        )
    if params.budget_usd is not None or params.budget_tokens is not None:
        lines.append(f"budget caps: usd={params.budget_usd}, tokens={params.budget_tokens}")
    print("\n".join(f"synthesize --dry-run: {line}" for line in lines))


def prepare_cache(cache_dir: Path) -> None:
    """The cache folder with its README (which also keeps the DVC output non-empty)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    readme = cache_dir / "README.txt"
    if not readme.exists():
        readme.write_text(CACHE_README, encoding="utf-8")


def generate(
    synthesis: Synthesis, cache_dir: Path, progress: bool, shared: SharedReplies | None = None
) -> tuple[Selection, list[Slot], Engine]:
    """Base requests, then bounded top-up rounds for labels that filters left short.

    With a shared store, the generation's lock is held throughout: a second run of the same
    generation waits, then finds every reply in the store.
    """
    params, planner = synthesis.params, synthesis.planner
    price = price_table(params)
    if price is None and params.budget_usd is not None:
        raise HybridscoreError(
            "params synthesize.budget_usd is set but synthesize.prices has no price for "
            f"{params.model!r}"
        )
    if price is None:
        print(
            f"synthesize: warning: no price for {params.model!r}; cost is reported as 0",
            file=sys.stderr,
        )
    prepare_cache(cache_dir)
    lock = nullcontext() if shared is None else shared.lock(planner.fingerprint())
    with lock:
        return _generate(synthesis, cache_dir, progress, price, shared)


def _generate(
    synthesis: Synthesis,
    cache_dir: Path,
    progress: bool,
    price: PriceTable | None,
    shared: SharedReplies | None,
) -> tuple[Selection, list[Slot], Engine]:
    params, planner = synthesis.params, synthesis.planner
    cache = ReplyCache(cache_dir, shared=shared)
    engine = Engine(
        make_backend(params, cache_dir),
        cache,
        max_reasks=params.max_reasks,
        price=price,
        budget=Budget(params.budget_usd, params.budget_tokens),
        progress=progress,
    )
    judge = judge_reply(params)
    slots = planner.base_slots()
    next_index = dict.fromkeys(synthesis.labels, planner.base_requests())
    replies: dict[str, list[str]] = {}
    grades: dict[str, str] | None = {} if params.consistency_filter else None
    held_out = synthesis.held_out_index()
    try:
        for round_ in range(params.topup_rounds + 1):
            todo = [s.request for s in slots if s.request.key not in replies]
            replies.update(engine.run(todo, judge))
            selection = select_rows(slots, replies, synthesis.train, params, grades, held_out)
            for _ in range(MAX_GRADING_PASSES):
                if grades is None or not selection.ungraded or engine.stats.budget_exhausted:
                    break
                grade(planner, engine, selection.ungraded, grades)
                selection = select_rows(slots, replies, synthesis.train, params, grades, held_out)
            if round_ == params.topup_rounds or engine.stats.budget_exhausted:
                break
            extra = planner.top_up(slots, selection, next_index)
            if not extra:
                break
            slots += extra
    finally:
        cache.close()
    return selection, slots, engine


def asked_rows(synthesis: Synthesis) -> int:
    """The rows a complete run makes: ``responses_per_label`` for every label."""
    return synthesis.params.responses_per_label * len(synthesis.labels)


def check_fill(
    synthesis: Synthesis, selection: Selection, slots: list[Slot], engine: Engine, cache: Path
) -> None:
    """Refuse a short generation (below ``min_fill``, or a label without rows) before any output.

    Every reply is in the cache already, so the rerun sends only the missing requests. A run
    stopped by the budget cap is complete by request: it keeps what was made.
    """
    params, stats = synthesis.params, engine.stats
    asked, made, need = asked_rows(synthesis), len(selection.rows), min_fill(params)
    empty = [label for label in synthesis.labels if selection.per_label[label] == 0]
    if asked == 0 or stats.budget_exhausted:
        return
    if not empty and made >= math.ceil(need * asked - 1e-9):
        return
    short = {
        label: selection.per_label[label]
        for label in synthesis.labels
        if selection.per_label[label] < params.responses_per_label
    }
    rejected = dict((selection.rejections + stats.rejected_replies).most_common(5))
    parts = [
        f"short generation: the {params.backend} generator ({params.model}) made {made} of "
        f"{asked} rows ({made / asked:.0%}; min_fill {need}) after {len(slots)} planned "
        f"requests and {params.topup_rounds} top-up round(s); rows of the short labels "
        f"(of {params.responses_per_label}): {short}"
    ]
    if empty:
        parts.append(f"no usable response for label(s) {empty}")
    if stats.failed:
        parts.append(f"{stats.failed} request(s) failed, last: {stats.last_error}")
    parts.append(f"top rejections: {rejected}")
    if empty and not stats.failed:
        parts.append(
            "try a stronger model, a higher temperature or max_new_tokens, or more "
            "examples_per_label"
        )
    if backend_class(params.backend).prefill and not synthesis.planner.template.reply:
        parts.append(
            "with long questions a small local model restates the prompt: try "
            f"synthesize.prompt_template={EXAMPLES_TEMPLATE} (examples only, a list to continue)"
        )
    parts.append(
        f"rerun `dvc repro`: the {len(engine.cache)} replies kept in {cache} are reused, only "
        "the missing requests are sent"
    )
    raise HybridscoreError("; ".join(parts))


def report_contamination(
    rows: list[dict[str, str]], n: int, human: pd.Series, held_out: dict[str, list[str]]
) -> dict[str, object]:
    """n-gram overlap of the synthetic rows with the held-out splits, next to
    the same measure for the human training rows: answers to one item share phrases (ASAP-SAS
    set 1: 88 % of the human training rows share a 5-gram with a test answer), so the human
    figure is the level that says nothing about leakage."""
    texts = [row["text"] for row in rows]
    out: dict[str, object] = {"ngram": n}
    for split, held_out_texts in held_out.items():
        baseline = contamination(human, held_out_texts, n)
        out[split] = contamination(texts, held_out_texts, n) | {
            "human_train": {k: baseline[k] for k in HUMAN_BASELINE}
        }
    return out


def stage_metrics(
    params: SynthesizeParams,
    labels: list[str],
    selection: Selection,
    planned: int,
    stats: EngineStats,
    human: pd.Series,
    held_out: dict[str, list[str]],
) -> dict[str, object]:
    """The stage's metrics; ``human``: the training split's texts (the contamination
    baseline)."""
    duplicates = {k: v for k, v in selection.rejections.items() if "duplicate" in k}
    return {
        "backend": params.backend,
        "model": params.model,
        "requests_planned": planned,
        **stats.as_dict(),
        "rejections": dict(sorted((selection.rejections + stats.rejected_replies).items())),
        "duplicates_removed": sum(duplicates.values()),
        "consistency_filter": params.consistency_filter,
        "rows": len(selection.rows),
        "rows_per_label": {label: selection.per_label[label] for label in labels},
        "contamination": report_contamination(
            selection.rows, params.contamination_ngram, human, held_out
        ),
    }


def skip(params: SynthesizeParams, paths: Paths, reason: str) -> None:
    """Write a header-only rows table and metrics that say why; ask for nothing."""
    labels = load_labels(paths)
    prepare_cache(paths.cache)  # the DVC output exists, with the replies it already holds
    write_table(pd.DataFrame(columns=COLUMNS), paths.out)
    human = read_table(paths.train)["text"]
    metrics = stage_metrics(
        params, labels, Selection(), 0, EngineStats(), human, read_held_out(paths)
    )
    write_json({**metrics, "skipped": reason}, paths.metrics)
    print(f"synthesize: skipped, no request sent: {reason}", file=sys.stderr)


def run(paths: Paths = Paths(), dry: bool = False, progress: bool | None = None) -> None:
    all_params = load_params()
    reason = skip_reason(all_params)
    if reason is not None and dry:
        print(f"synthesize --dry-run: skipped, no request would be sent: {reason}")
        return
    if reason is not None:
        skip(all_params.synthesize, paths, reason)
        return
    synthesis = Synthesis.load(paths, all_params)
    params = synthesis.params
    shared = shared_store()
    if dry:
        dry_run(synthesis, paths.cache, shared)
        return
    selection, slots, engine = generate(
        synthesis, paths.cache, params.progress if progress is None else progress, shared
    )
    stats = engine.stats
    check_fill(synthesis, selection, slots, engine, paths.cache)
    rows = pd.DataFrame(selection.rows, columns=COLUMNS)
    write_table(rows, paths.out)
    metrics = stage_metrics(
        params,
        synthesis.labels,
        selection,
        len(slots),
        stats,
        synthesis.train["text"],
        synthesis.held_out,
    )
    write_json({**metrics, "example_rows": len(synthesis.planner.train)}, paths.metrics)
    if stats.failed or stats.budget_exhausted:
        reason = (
            "the budget cap was reached"
            if stats.budget_exhausted
            else f"{stats.failed} request(s) failed, last: {stats.last_error}"
        )
        print(
            f"synthesize: warning: {reason}; {len(rows)} of {asked_rows(synthesis)} rows; "
            "rerun to send only the missing requests",
            file=sys.stderr,
        )
    print(
        f"synthesize: {len(rows)} rows ({dict(selection.per_label)}), "
        f"{stats.requests_sent} requests "
        f"sent, {stats.cache_hits} cache hits, ${stats.cost_usd:.4f}",
        file=sys.stderr,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="hybridscore synthesize", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print requests, tokens and cost; call nothing"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    defaults = Paths()
    for name, help_text in (
        ("train", "prepared training split (the only rows prompts see)"),
        ("labels", "labels.json of the prepared data"),
        ("val", "validation split (never in a prompt: copies dropped, overlap reported)"),
        ("test", "test split (never in a prompt: copies dropped, overlap reported)"),
        ("cache", "durable LLM reply cache folder"),
        ("out", "synthetic rows CSV to write"),
        ("metrics", "metrics JSON to write"),
    ):
        default = getattr(defaults, name)
        parser.add_argument(
            f"--{name}", type=Path, default=default, help=f"{help_text} (default: {default})"
        )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    paths = Paths(args.train, args.labels, args.val, args.test, args.cache, args.out, args.metrics)
    try:
        run_stage(
            "synthesize", lambda: run(paths, args.dry_run, False if args.no_progress else None)
        )
    except KeyboardInterrupt:  # Ctrl-C: every acknowledged reply is in the cache already
        kept = len(ReplyCache(paths.cache)) if paths.cache.is_dir() else 0
        print(
            f"hybridscore synthesize: interrupted: kept {kept} replies in {paths.cache}; "
            "rerun to resume",
            file=sys.stderr,
        )
        sys.exit(130)


if __name__ == "__main__":
    main()
