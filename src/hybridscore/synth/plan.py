"""Request planning: which question, few-shot examples and prompt each request gets, top-ups."""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from hybridscore.llm.types import Request, request_key
from hybridscore.params import SynthesizeParams
from hybridscore.synth.prompt import PromptTemplate, context, grade_format, responses_format
from hybridscore.synth.validate import grade_schema, responses_schema

if TYPE_CHECKING:
    from hybridscore.synth.select import Selection


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
    """Builds requests from the training table only (it is never given val/test).

    ``structured``: the backend enforces a JSON schema, so prompts ask for JSON replies.
    """

    train: pd.DataFrame
    labels: list[str]
    params: SynthesizeParams
    seed: int
    template: PromptTemplate
    grader: PromptTemplate | None = None
    structured: bool = False
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

    def fingerprint(self) -> str:
        """A name for this generation: the keys of every label's first request.

        They hold everything that determines the requests except ``responses_per_label``, so
        runs that differ only in size share it (and wait for each other, which costs nothing).
        """
        return request_key(
            kind="generation", first=[self.slot(x, 0).request.key for x in self.labels]
        )

    def base_slots(self) -> list[Slot]:
        """The first round: ``base_requests`` per label."""
        count = self.base_requests()
        return [self.slot(label, i) for label in self.labels for i in range(count)]

    def slot(self, label: str, index: int) -> Slot:
        """Request ``index`` for ``label``: questions round-robin, seeded few-shot sample."""
        qid, pool = self._groups[label][index % len(self._groups[label])]
        question, reference = self._questions[qid]
        digest = hashlib.sha256(f"{self.seed}|{label}|{qid}|{index}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        shots = tuple(rng.sample(pool, min(self.params.examples_per_label, len(pool))))
        p = self.params
        messages = self.template.render(
            context=context(question, reference, self.labels),
            label=label,
            examples="\n".join(f"- {text}" for _, text in shots) or "(none available)",
            count=str(p.responses_per_request),
            format=responses_format(self.structured, p.responses_per_request),
        )
        schema = responses_schema(label, p.responses_per_request) if self.structured else None
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
            prefill=self.template.reply,
        )
        return Slot(label, index, qid, question, reference, shots, request)

    def top_up(
        self, slots: list[Slot], selection: Selection, next_index: dict[str, int]
    ) -> list[Slot]:
        """More requests for the labels ``selection`` left short, sized by their usable rate.

        ``next_index`` (label → the next request index) is advanced past the new requests.
        """
        extra = []
        for label in self.labels:
            short = self.params.responses_per_label - selection.per_label[label]
            if short <= 0:
                continue
            asked = sum(1 for s in slots if s.label == label)
            per_request = max(
                selection.usable_per_label[label] / asked, 0.25 * self.rows_per_request
            )
            count = min(math.ceil(short / per_request), self.base_requests())
            start = next_index[label]
            extra += [self.slot(label, i) for i in range(start, start + count)]
            next_index[label] = start + count
        return extra

    def grade_request(self, slot: Slot, text: str) -> Request:
        """A blind grading request for one synthetic row (the consistency filter)."""
        assert self.grader is not None
        p = self.params
        messages = self.grader.render(
            context=context(slot.question, slot.reference, self.labels),
            labels=", ".join(self.labels),
            response=text,
            format=grade_format(self.structured),
        )
        schema = grade_schema(self.labels) if self.structured else None
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
