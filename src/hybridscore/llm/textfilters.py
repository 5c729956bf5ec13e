"""Text normalisation, exact/near-duplicate detection and n-gram contamination measures."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Iterable

_NON_WORD = re.compile(r"[^\w]+")
COMMON_POSTINGS = 400  # shingles shared by more texts than this are too common to index


def normalize(text: str) -> str:
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def shingles(text: str) -> frozenset[str]:
    """Word bigrams of the normalised text (the words themselves for one-word texts)."""
    words = normalize(text).split()
    if len(words) < 2:
        return frozenset(words)
    return frozenset(f"{a} {b}" for a, b in itertools.pairwise(words))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


class DuplicateIndex:
    """Texts seen so far; ``match`` says whether a text is an exact or near duplicate of one."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._exact: set[str] = set()
        self._sets: list[frozenset[str]] = []
        self._postings: dict[str, list[int]] = {}

    def match(self, text: str) -> str | None:
        """``"exact"``, ``"near"`` or None."""
        norm = normalize(text)
        if norm in self._exact:
            return "exact"
        if self.threshold >= 1.0:
            return None
        grams = shingles(text)
        shared: Counter[int] = Counter()
        for gram in grams:
            posting = self._postings.get(gram, ())
            if len(posting) <= COMMON_POSTINGS:
                shared.update(posting)
        for index, _ in shared.most_common(50):
            if jaccard(grams, self._sets[index]) >= self.threshold:
                return "near"
        return None

    def add(self, text: str) -> None:
        self._exact.add(normalize(text))
        if self.threshold >= 1.0:
            return
        grams = shingles(text)
        index = len(self._sets)
        self._sets.append(grams)
        for gram in grams:
            self._postings.setdefault(gram, []).append(index)


def ngrams(text: str, n: int) -> set[str]:
    words = normalize(text).split()
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def contamination(
    synthetic: Iterable[str], reference: Iterable[str], n: int
) -> dict[str, float | int]:
    """How much synthetic text overlaps a held-out split (word n-grams; shorter texts whole)."""
    ref_grams: set[str] = set()
    ref_exact: set[str] = set()
    for text in reference:
        ref_grams |= ngrams(text, n)
        ref_exact.add(normalize(text))
    rows = overlapping = exact = grams_total = grams_seen = 0
    for text in synthetic:
        rows += 1
        grams = ngrams(text, n)
        hit = len(grams & ref_grams)
        grams_total += len(grams)
        grams_seen += hit
        overlapping += hit > 0
        exact += normalize(text) in ref_exact
    return {
        "rows": rows,
        "rows_with_overlap": overlapping,
        "rows_with_overlap_fraction": round(overlapping / rows, 4) if rows else 0.0,
        "exact_matches": exact,
        "ngram_overlap_fraction": round(grams_seen / grams_total, 4) if grams_total else 0.0,
    }
