"""Selection: the usable, non-duplicate (and consistently graded) rows, up to the per-label cap."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from hybridscore.params import SynthesizeParams
from hybridscore.synth.plan import Slot
from hybridscore.synth.textfilters import DuplicateIndex, shingles
from hybridscore.synth.validate import iter_usable

COLUMNS = ["id", "question_id", "text", "label", "source", "question", "reference"]


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
    held_out: DuplicateIndex | None = None,
) -> Selection:
    """Filter every reply item in request order and keep up to ``responses_per_label`` per label.

    Deterministic given the replies (and ``grades``, text → label given by the consistency
    filter; "" = could not be graded): rebuilt from scratch after every round. An item that
    is, or nearly is, a ``held_out`` (val/test) text is dropped: the generator never sees
    those texts, but on short answers it writes one by chance.
    """
    selection = Selection()
    candidates = [
        (slot, c, i, item)
        for slot in slots
        for c, i, item in iter_usable(
            slot.request,
            replies.get(slot.request.key, []),
            min_chars=params.min_chars,
            max_chars=params.max_chars,
            rejections=selection.rejections,
        )
    ]
    texts = [*train["text"], *(item for *_, item in candidates)]
    frequency = Counter(gram for text in texts for gram in shingles(text))
    human = DuplicateIndex(params.near_duplicate_threshold, frequency)
    for text in train["text"]:
        human.add(text)
    synthetic = DuplicateIndex(params.near_duplicate_threshold, frequency)
    for slot, c, i, item in candidates:
        kind = human.match(item)
        reason = f"{kind}_duplicate_of_human" if kind else None
        if reason is None and held_out is not None and held_out.match(item):
            reason = "matches_val_or_test"
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
