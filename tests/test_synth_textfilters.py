"""Duplicate detection and the contamination measure."""

from __future__ import annotations

from hybridscore.synth.textfilters import DuplicateIndex, contamination


def test_duplicate_index_finds_exact_and_near_duplicates_only() -> None:
    index = DuplicateIndex(threshold=0.7)
    index.add("The plant needs light to make its food from water and air.")
    assert index.match("the plant NEEDS light, to make its food from water and air") == "exact"
    assert index.match("The plant needs light to make its food from water and the air.") == "near"
    assert index.match("Magnets attract iron but not brass rings.") is None
    assert DuplicateIndex(threshold=1.0).match("anything") is None


def test_contamination_counts_shared_ngrams() -> None:
    held_out = ["the nail sticks because it is made of iron"]
    report = contamination(
        ["so the nail sticks because it is iron", "brass is not magnetic at all"], held_out, n=3
    )
    assert report["rows"] == 2 and report["rows_with_overlap"] == 1
    assert 0 < report["ngram_overlap_fraction"] < 1 and report["exact_matches"] == 0
