"""Stage ``synthesize``: ask an LLM for new scored responses, built from the train split only.

Reads ``data/prepared/train.csv`` + ``labels.json``; writes ``data/synthetic/rows.csv``, the
durable reply cache ``data/llm_cache/`` and ``metrics/synthesize.json``. Validation and test
rows are read only after generation, for the contamination report.

    python -m hybridscore.synthesize [--dry-run] [--no-progress]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hybridscore.data import read_labels, read_table, write_json, write_table
from hybridscore.errors import HybridscoreError, run_stage
from hybridscore.llm import (
    Budget,
    Engine,
    ReplyCache,
    Request,
    make_backend,
    price_table,
    request_key,
)
from hybridscore.llm.prompt import PromptTemplate, load_template
from hybridscore.llm.textfilters import DuplicateIndex, contamination, shingles
from hybridscore.llm.tokens import estimate_prompt_tokens, estimate_tokens
from hybridscore.llm.validate import (
    Rejected,
    check_item,
    grade_schema,
    parse_grade,
    parse_reply,
    responses_schema,
    usable_items,
)
from hybridscore.params import SynthesizeParams, load_params

PREPARED = Path("data/prepared")
TRAIN = PREPARED / "train.csv"
LABELS = PREPARED / "labels.json"
HELD_OUT = {"val": PREPARED / "val.csv", "test": PREPARED / "test.csv"}  # report only
CACHE_DIR = Path("data/llm_cache")
OUTPUT = Path("data/synthetic/rows.csv")
METRICS = Path("metrics/synthesize.json")
CACHE_README = """LLM reply cache of the hybridscore synthesize stage (a DVC output, persist: true).
replies/*.jsonl: append-only shards, one JSON object per accepted reply, keyed by a sha256 of
everything that determined the request. batches/*.json: submitted Batch API jobs (resume).
Share it with `dvc push` / `dvc pull`; never edit shards by hand (delete one to re-ask).
"""
MAX_GRADING_PASSES = 5  # rows that replace inconsistent ones are graded in further passes


# --------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class Slot:
    """One planned request: request ``index`` for ``label`` about one training question."""

    label: str
    index: int
    question_id: str
    question: str
    reference: str
    examples: tuple[tuple[str, str], ...]  # (id, text) of few-shot training rows
    request: Request


@dataclass
class Planner:
    """Builds requests from the training table only (it is never given val/test)."""

    train: pd.DataFrame
    labels: list[str]
    params: SynthesizeParams
    seed: int
    template: PromptTemplate
    grader: PromptTemplate | None = None
    _groups: dict[str, list[tuple[str, list[tuple[str, str]]]]] = field(default_factory=dict)
    _questions: dict[str, tuple[str, str]] = field(default_factory=dict)
    _template_sha: str = ""

    def __post_init__(self) -> None:
        self._template_sha = hashlib.sha256(self.template.text.encode()).hexdigest()
        for label in self.labels:
            rows = self.train[self.train["label"] == label]
            if len(rows):
                groups = [
                    (str(q), list(zip(g["id"], g["text"], strict=True)))
                    for q, g in rows.sort_values("id").groupby("question_id", sort=True)
                ]
            else:  # zero-shot for a label without training examples
                groups = [(str(q), []) for q in sorted(self.train["question_id"].unique())]
            self._groups[label] = groups
        firsts = self.train.drop_duplicates("question_id")
        self._questions = {
            str(q): (question, reference)
            for q, question, reference in zip(
                firsts["question_id"], firsts["question"], firsts["reference"], strict=True
            )
        }

    @property
    def rows_per_request(self) -> int:
        return self.params.n * self.params.responses_per_request

    def base_requests(self) -> int:
        """Requests per label that would give ``responses_per_label`` rows if all were usable."""
        return math.ceil(self.params.responses_per_label / self.rows_per_request)

    def _format(self) -> str:
        if self.params.backend != "local":
            return (
                'Reply in JSON: {"label": "<the grade>", "responses": [<the answers as strings>]}.'
            )
        if self.params.responses_per_request == 1:
            return "Reply with the answer only."
        return "Reply with a numbered list, one answer per line."

    def _context(self, question: str, reference: str) -> str:
        lines = []
        if question:
            lines.append(f"Question: {question}")
        if reference:
            lines.append(f"Reference answer: {reference}")
        lines.append(f"Grades, from lowest to highest: {', '.join(self.labels)}.")
        return "\n".join(lines) + "\n"

    def slot(self, label: str, index: int) -> Slot:
        """Request ``index`` for ``label``: questions round-robin, seeded few-shot sample."""
        qid, pool = self._groups[label][index % len(self._groups[label])]
        question, reference = self._questions[qid]
        digest = hashlib.sha256(f"{self.seed}|{label}|{qid}|{index}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        shots = tuple(rng.sample(pool, min(self.params.examples_per_label, len(pool))))
        p = self.params
        messages = self.template.render(
            context=self._context(question, reference),
            label=label,
            examples="\n".join(f"- {text}" for _, text in shots) or "(none available)",
            count=str(p.responses_per_request),
            format=self._format(),
        )
        schema = None if p.backend == "local" else responses_schema(label, p.responses_per_request)
        key = request_key(
            backend=p.backend,
            model=p.model,
            template=self._template_sha,
            messages=messages,
            examples=[i for i, _ in shots],
            label=label,
            question_id=qid,
            temperature=p.temperature,
            seed=self.seed,
            index=index,
            n=p.n,
            count=p.responses_per_request,
            max_tokens=p.max_new_tokens,
            schema=schema,
        )
        request = Request(
            key=key,
            messages=messages,
            temperature=p.temperature,
            max_tokens=p.max_new_tokens,
            seed=int.from_bytes(digest[8:12], "big") % (2**31 - 1),
            n=p.n,
            count=p.responses_per_request,
            label=label,
            schema=schema,
            schema_name="synthetic_responses",
        )
        return Slot(label, index, qid, question, reference, shots, request)

    def grade_request(self, slot: Slot, text: str) -> Request:
        """A blind grading request for one synthetic row (the consistency filter)."""
        assert self.grader is not None
        p = self.params
        strict = p.backend != "local"
        fmt = 'Reply in JSON: {"label": "<the grade>"}.' if strict else "Reply with the grade only."
        messages = self.grader.render(
            context=self._context(slot.question, slot.reference),
            labels=", ".join(self.labels),
            response=text,
            format=fmt,
        )
        schema = grade_schema(self.labels) if strict else None
        key = request_key(
            kind="grade",
            backend=p.backend,
            model=p.model,
            template=hashlib.sha256(self.grader.text.encode()).hexdigest(),
            messages=messages,
            seed=self.seed,
            schema=schema,
        )
        return Request(
            key=key,
            messages=messages,
            temperature=0.0,
            max_tokens=20,
            seed=self.seed % (2**31 - 1),
            n=1,
            count=1,
            schema=schema,
            schema_name="grade",
        )


# --------------------------------------------------------------------------- selection
@dataclass
class Selection:
    """The rows kept so far, and why the others were not."""

    rows: list[dict[str, str]] = field(default_factory=list)
    rejections: Counter[str] = field(default_factory=Counter)
    per_label: Counter[str] = field(default_factory=Counter)
    usable_per_label: Counter[str] = field(default_factory=Counter)  # before the per-label cap
    ungraded: list[tuple[Slot, str]] = field(default_factory=list)  # kept, awaiting a grade


def select_rows(
    slots: Sequence[Slot],
    replies: dict[str, list[str]],
    train: pd.DataFrame,
    params: SynthesizeParams,
    grades: dict[str, str] | None = None,
) -> Selection:
    """Filter every reply item in request order and keep up to ``responses_per_label`` per label.

    Deterministic given the replies (and ``grades``, text → label given by the consistency
    filter; "" = could not be graded): rebuilt from scratch after every round.
    """
    selection = Selection()
    candidates: list[tuple[Slot, int, int, str]] = []
    for slot in slots:
        for c, choice in enumerate(replies.get(slot.request.key, ())):
            try:
                items = parse_reply(slot.request, choice)
            except Rejected as exc:
                selection.rejections[exc.reason] += 1
                continue
            for i, item in enumerate(items):
                item = item.strip()
                reason = check_item(item, min_chars=params.min_chars, max_chars=params.max_chars)
                if reason is None:
                    candidates.append((slot, c, i, item))
                else:
                    selection.rejections[reason] += 1
    texts = [*train["text"], *(item for *_, item in candidates)]
    frequency = Counter(gram for text in texts for gram in shingles(text))
    human = DuplicateIndex(params.near_duplicate_threshold, frequency)
    for text in train["text"]:
        human.add(text)
    synthetic = DuplicateIndex(params.near_duplicate_threshold, frequency)
    for slot, c, i, item in candidates:
        kind = human.match(item)
        reason = f"{kind}_duplicate_of_human" if kind else None
        if reason is None:
            kind = synthetic.match(item, add=True)
            reason = f"{kind}_duplicate_synthetic" if kind else None
        if reason is None and grades is not None and item in grades:
            reason = {slot.label: None, "": "ungradable"}.get(grades[item], "inconsistent_grade")
        if reason is not None:
            selection.rejections[reason] += 1
            continue
        selection.usable_per_label[slot.label] += 1
        if selection.per_label[slot.label] >= params.responses_per_label:
            continue  # surplus: kept in the cache, not in the output
        selection.per_label[slot.label] += 1
        if grades is not None and item not in grades:
            selection.ungraded.append((slot, item))
        row_id = hashlib.sha256(f"{slot.request.key}|{c}|{i}".encode()).hexdigest()[:16]
        selection.rows.append(
            {
                "id": f"syn-{row_id}",
                "question_id": slot.question_id,
                "text": item,
                "label": slot.label,
                "source": "synthetic",
                "question": slot.question,
                "reference": slot.reference,
            }
        )
    return selection


def judge_reply(params: SynthesizeParams):
    """Accept a reply when at least one of its choices holds a usable item."""

    def judge(request: Request, choices: list[str]) -> str | None:
        reasons: Counter[str] = Counter()
        usable = usable_items(
            request,
            choices,
            min_chars=params.min_chars,
            max_chars=params.max_chars,
            rejections=reasons,
        )
        if usable:
            return None
        return reasons.most_common(1)[0][0] if reasons else "no_choices"

    return judge


# --------------------------------------------------------------------------- the stage
@dataclass
class Synthesis:
    """Everything one run needs, built from params and the training data."""

    params: SynthesizeParams
    train: pd.DataFrame
    labels: list[str]
    planner: Planner

    @classmethod
    def load(cls) -> Synthesis:
        all_params = load_params()
        params = all_params.synthesize
        if not LABELS.exists():
            raise HybridscoreError(f"{LABELS}: not found (run the prepare stage first)")
        labels = read_labels(LABELS)
        train = read_table(TRAIN)
        for column in ("question", "reference"):
            if column not in train:
                train[column] = ""
        unknown = sorted(set(train["label"]) - set(labels))
        if unknown:
            raise HybridscoreError(f"{TRAIN}: labels {unknown} are not in {LABELS}")
        seed = params.seed if params.seed is not None else all_params.seed
        grader = load_template(params.grade_template) if params.consistency_filter else None
        planner = Planner(
            train, labels, params, seed, load_template(params.prompt_template), grader
        )
        return cls(params, train, labels, planner)

    def base_slots(self) -> list[Slot]:
        count = self.planner.base_requests()
        return [self.planner.slot(label, i) for label in self.labels for i in range(count)]


def dry_run(synthesis: Synthesis) -> None:
    """Print requests, estimated tokens and cost without calling anything."""
    params = synthesis.params
    slots = synthesis.base_slots()
    with ReplyCache(CACHE_DIR) as cache:
        todo = [s.request for s in slots if s.request.key not in cache]
    prompt_tokens = sum(estimate_prompt_tokens(r) for r in todo)
    mean_answer = (
        synthesis.train["text"].map(estimate_tokens).mean() if len(synthesis.train) else 20
    )
    expected_out = sum(r.n * (r.count * (mean_answer + 4) + 12) for r in todo)
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


def generate(synthesis: Synthesis, progress: bool) -> tuple[Selection, list[Slot], Engine]:
    """Base requests, then bounded top-up rounds for labels that filters left short."""
    params = synthesis.params
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
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    readme = CACHE_DIR / "README.txt"
    if not readme.exists():  # also keeps the DVC output non-empty before the first reply
        readme.write_text(CACHE_README, encoding="utf-8")
    cache = ReplyCache(CACHE_DIR)
    engine = Engine(
        make_backend(params, CACHE_DIR),
        cache,
        max_reasks=params.max_reasks,
        price=price,
        budget=Budget(params.budget_usd, params.budget_tokens),
        progress=progress,
    )
    judge = judge_reply(params)
    slots = synthesis.base_slots()
    next_index = dict.fromkeys(synthesis.labels, synthesis.planner.base_requests())
    replies: dict[str, list[str]] = {}
    grades: dict[str, str] | None = {} if params.consistency_filter else None
    try:
        for round_ in range(params.topup_rounds + 1):
            todo = [s.request for s in slots if s.request.key not in replies]
            replies.update(engine.run(todo, judge))
            selection = select_rows(slots, replies, synthesis.train, params, grades)
            for _ in range(MAX_GRADING_PASSES):
                if grades is None or not selection.ungraded or engine.stats.budget_exhausted:
                    break
                grade(synthesis, engine, selection.ungraded, grades)
                selection = select_rows(slots, replies, synthesis.train, params, grades)
            if round_ == params.topup_rounds or engine.stats.budget_exhausted:
                break
            extra = []
            for label in synthesis.labels:
                short = params.responses_per_label - selection.per_label[label]
                if short <= 0:
                    continue
                asked = sum(1 for s in slots if s.label == label)
                per_request = max(
                    selection.usable_per_label[label] / asked,
                    0.25 * synthesis.planner.rows_per_request,
                )
                count = min(math.ceil(short / per_request), synthesis.planner.base_requests())
                start = next_index[label]
                extra += [synthesis.planner.slot(label, i) for i in range(start, start + count)]
                next_index[label] = start + count
            if not extra:
                break
            slots += extra
    finally:
        cache.close()
    return selection, slots, engine


def grade(
    synthesis: Synthesis, engine: Engine, pending: list[tuple[Slot, str]], grades: dict[str, str]
) -> None:
    """The consistency filter: grade each pending row blind; record text → label ("" = failed)."""
    labels, strict = synthesis.labels, synthesis.params.backend != "local"
    asked = [synthesis.planner.grade_request(slot, text) for slot, text in pending]
    requests = {request.key: text for request, (_, text) in zip(asked, pending, strict=True)}

    def judge(request: Request, choices: list[str]) -> str | None:
        try:
            parse_grade(choices[0] if choices else "", labels, strict)
        except Rejected as exc:
            return exc.reason
        return None

    results = engine.run(asked, judge)
    for key, text in requests.items():
        choices = results.get(key)
        try:
            grades[text] = parse_grade(choices[0], labels, strict) if choices else ""
        except Rejected:
            grades[text] = ""


def report_contamination(rows: list[dict[str, str]], n: int) -> dict[str, object]:
    """n-gram overlap of the synthetic rows with the held-out splits (read only here)."""
    texts = [row["text"] for row in rows]
    out: dict[str, object] = {"ngram": n}
    for split, path in HELD_OUT.items():
        if path.exists():
            out[split] = contamination(texts, read_table(path)["text"], n)
    return out


def run(dry: bool = False, progress: bool | None = None) -> None:
    synthesis = Synthesis.load()
    params = synthesis.params
    if dry:
        dry_run(synthesis)
        return
    selection, slots, engine = generate(
        synthesis, params.progress if progress is None else progress
    )
    stats = engine.stats
    empty = [label for label in synthesis.labels if selection.per_label[label] == 0]
    if params.responses_per_label > 0 and empty and not stats.budget_exhausted:
        rejected = dict((selection.rejections + stats.rejected_replies).most_common(5))
        raise HybridscoreError(
            f"the {params.backend} generator ({params.model}) gave no usable response for "
            f"label(s) {empty} after {len(slots)} planned requests and {params.topup_rounds} "
            f"top-up round(s); top rejections: {rejected}"
            + (
                f"; {stats.failed} request(s) failed, last: {stats.last_error}"
                if stats.failed
                else ""
            )
            + ". Try a stronger model, a higher temperature or max_new_tokens, or more "
            "examples_per_label."
        )
    rows = pd.DataFrame(
        selection.rows,
        columns=["id", "question_id", "text", "label", "source", "question", "reference"],
    )
    write_table(rows, OUTPUT)
    duplicates = {k: v for k, v in selection.rejections.items() if "duplicate" in k}
    metrics = {
        "backend": params.backend,
        "model": params.model,
        "requests_planned": len(slots),
        **stats.as_dict(),
        "rejections": dict(sorted((selection.rejections + stats.rejected_replies).items())),
        "duplicates_removed": sum(duplicates.values()),
        "consistency_filter": params.consistency_filter,
        "rows": len(rows),
        "rows_per_label": {label: selection.per_label[label] for label in synthesis.labels},
        "contamination": report_contamination(selection.rows, params.contamination_ngram),
    }
    write_json(metrics, METRICS)
    if stats.failed or stats.budget_exhausted:
        reason = (
            "the budget cap was reached"
            if stats.budget_exhausted
            else f"{stats.failed} request(s) failed"
        )
        print(
            f"synthesize: warning: {reason}; rerun to send only the missing requests",
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
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    run_stage("synthesize", lambda: run(args.dry_run, False if args.no_progress else None))


if __name__ == "__main__":
    main()
