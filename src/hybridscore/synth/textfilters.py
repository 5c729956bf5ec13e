"""Text normalisation, exact/near-duplicate detection and n-gram contamination measures."""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable

_NON_WORD = re.compile(r"[^\w]+")


@functools.lru_cache(maxsize=1 << 16)
def normalize(text: str) -> str:
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


@functools.lru_cache(maxsize=1 << 16)
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
    """Texts seen so far; ``match`` says whether a text is an exact or near duplicate of one.

    Near duplicates (word-bigram Jaccard ≥ ``threshold``) are found exactly, without comparing
    every pair, by prefix filtering (AllPairs): under a fixed order of shingles, two sets that
    similar share one of their first ``|a| - ceil(t·|a|) + 1`` shingles, so only sets sharing a
    prefix shingle are compared. ``frequency`` (shingle → count) orders rare shingles first,
    which keeps those candidate lists short; any order gives the same answers.
    """

    def __init__(self, threshold: float, frequency: Counter[str] | None = None) -> None:
        self.threshold = threshold
        self.frequency = frequency if frequency is not None else Counter()
        self._exact: set[str] = set()
        self._sets: list[frozenset[str]] = []
        self._postings: dict[str, list[int]] = {}

    def _prefix(self, grams: frozenset[str]) -> list[str]:
        keep = len(grams) - math.ceil(self.threshold * len(grams) - 1e-9) + 1
        return sorted(grams, key=lambda g: (self.frequency[g], g))[: max(keep, 1)]

    def match(self, text: str, add: bool = False) -> str | None:
        """``"exact"``, ``"near"`` or None; with ``add``, a text that matches nothing is added."""
        norm = normalize(text)
        if norm in self._exact:
            return "exact"
        if self.threshold < 1.0:
            grams = shingles(text)
            prefix = self._prefix(grams)
            low, high = self.threshold * len(grams), len(grams) / self.threshold
            seen: set[int] = set()
            for gram in prefix:
                for index in self._postings.get(gram, ()):
                    if index in seen:
                        continue
                    seen.add(index)
                    other = self._sets[index]
                    if low <= len(other) <= high and jaccard(grams, other) >= self.threshold:
                        return "near"
        if add:
            self._insert(norm, text, prefix if self.threshold < 1.0 else None)
        return None

    def add(self, text: str) -> None:
        self._insert(normalize(text), text, None)

    def _insert(self, norm: str, text: str, prefix: list[str] | None) -> None:
        self._exact.add(norm)
        if self.threshold >= 1.0:
            return
        grams = shingles(text)
        index = len(self._sets)
        self._sets.append(grams)
        for gram in prefix if prefix is not None else self._prefix(grams):
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
