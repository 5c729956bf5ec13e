"""Leakage audit: did a val/test text, or a near-duplicate of one, reach training or a prompt?

Texts are compared after normalising case, whitespace and punctuation; near duplicates are
word-bigram Jaccard ≥ ``threshold`` (the synthesize stage's own ``DuplicateIndex``, which
indexes shingles instead of comparing every pair). Published data sets hold identical short
answers by different students in different splits: a match that the human training rows explain
(an exact copy: the same text is a human training answer; a near one: the used text is, or
nearly is, a human training answer) is counted as a ``natural_duplicate``, not as leakage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from hybridscore.errors import HybridscoreError
from hybridscore.synth.textfilters import DuplicateIndex, normalize, shingles

EXAMPLES = 3  # leaked texts kept per source and split, for the report and the error
THRESHOLD = 0.85  # word-bigram Jaccard from which a text is a near duplicate


def audit_index(
    texts: Iterable[str], threshold: float = THRESHOLD, frequency: Counter[str] | None = None
) -> DuplicateIndex:
    """``texts`` indexed as ``audit`` matches against them (``synthesize`` indexes val/test
    and drops the generated rows that match, so that none reaches a training batch)."""
    index = DuplicateIndex(threshold, frequency)
    for text in texts:
        if normalize(text):
            index.add(text)
    return index


def audit(
    held_out: dict[str, list[str]],
    used: dict[str, list[str]],
    human_train: list[str],
    threshold: float = THRESHOLD,
) -> dict[str, object]:
    """Per used source and held-out split: exact and near-duplicate matches, how many of them
    are natural duplicates, how many leaked, and a few leaked texts. Totals at the top level."""
    frequency: Counter[str] = Counter()
    for texts in held_out.values():
        for text in texts:
            frequency.update(shingles(text))
    splits = {name: audit_index(texts, threshold, frequency) for name, texts in held_out.items()}
    human = audit_index(human_train, threshold, frequency)
    sources: dict[str, dict[str, object]] = {}
    totals = Counter({"exact": 0, "near_duplicates": 0, "natural_duplicates": 0, "leaked": 0})
    for source, texts in used.items():
        found = {split: Counter() for split in splits}
        examples: dict[str, list[str]] = {split: [] for split in splits}
        for text in texts:
            if not normalize(text):
                continue
            in_human = "unknown"  # looked up once, on the first match
            for split, index in splits.items():
                kind = index.match(text)
                if kind is None:
                    continue
                if in_human == "unknown":
                    in_human = human.match(text)
                # an exact copy is natural only if the human rows hold the same text
                natural = in_human == "exact" if kind == "exact" else in_human is not None
                found[split]["exact" if kind == "exact" else "near_duplicates"] += 1
                found[split]["natural_duplicates" if natural else "leaked"] += 1
                if not natural and len(examples[split]) < EXAMPLES:
                    examples[split].append(text)
        sources[source] = {"rows": len(texts)}
        for split, counts in found.items():
            sources[source][split] = {key: counts[key] for key in totals} | {
                "examples": examples[split]
            }
            totals.update(counts)
    return {
        "threshold": threshold,
        "held_out_rows": {name: len(texts) for name, texts in held_out.items()},
        "human_train_rows": len(human_train),
        **totals,
        "sources": sources,
    }


def check(report: dict[str, object]) -> None:
    """Raise ``HybridscoreError`` naming the source, split and a text where anything leaked."""
    for source, result in report["sources"].items():
        for split, counts in result.items():
            if isinstance(counts, dict) and counts["leaked"]:
                raise HybridscoreError(
                    f"leakage: {counts['leaked']} {source} text(s) match {split} texts exactly or "
                    f"nearly (Jaccard >= {report['threshold']}) and are not human training "
                    f"answers, e.g. {counts['examples'][0]!r}"
                )
