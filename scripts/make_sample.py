"""Build the embedded sample (data/sample/scientsbank.csv) from SemEval-2013 SciEntsBank XML.

Usage: python scripts/make_sample.py [../shared/datasets/semeval2013-scientsbank] [N_QUESTIONS]

Takes the N questions with the most 'contradictory' training answers (ties by id), all their
training answers and their unseen-answers test answers. The test split (split=test) is the
unseen-answers plus a seeded quarter of each question's training answers (stratified by label),
so that test metrics rest on a few hundred rows rather than 4 per question; the other training
answers are split=train. The data is CC BY-SA 3.0 (Dzikovska et al. 2013);
data/sample/README.md carries the attribution.
"""

from __future__ import annotations

import csv
import random
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets/semeval2013-scientsbank")
N_QUESTIONS = int(sys.argv[2]) if len(sys.argv) > 2 else 16
OUT = Path(__file__).resolve().parents[1] / "data" / "sample" / "scientsbank.csv"
TEST_SHARE = 0.25  # of each question's training answers, per label
SEED = 2013


def read_question(path: Path) -> dict:
    root = ET.parse(path).getroot()
    return {
        "question_id": root.get("id"),
        "question": " ".join(root.findtext("questionText", "").split()),
        "reference": " ".join(
            (root.find("referenceAnswers")[0].text or "").split()  # the first reference answer
        ),
        "answers": [
            (a.get("id"), " ".join((a.text or "").split()), a.get("accuracy"))
            for a in root.find("studentAnswers")
        ],
    }


def held_out_ids(answers: list[tuple[str, str, str]], rng: random.Random) -> set[str]:
    """A ``TEST_SHARE`` of the non-empty answers of each label, drawn with ``rng``."""
    by_label: dict[str, list[str]] = {}
    for answer_id, text, label in answers:
        if text:
            by_label.setdefault(label, []).append(answer_id)
    moved: set[str] = set()
    for label in sorted(by_label):
        ids = sorted(by_label[label])
        moved.update(rng.sample(ids, round(TEST_SHARE * len(ids))))
    return moved


def main() -> None:
    train = {
        q["question_id"]: q for q in map(read_question, sorted((ROOT / "train").glob("*.xml")))
    }
    test = {
        q["question_id"]: q
        for q in map(read_question, sorted((ROOT / "test" / "unseen-answers").glob("*.xml")))
    }

    def contradictory(qid: str) -> int:
        return sum(1 for *_, label in train[qid]["answers"] if label == "contradictory")

    chosen = sorted((q for q in train if q in test), key=lambda q: (-contradictory(q), q))[
        :N_QUESTIONS
    ]
    rng = random.Random(SEED)
    rows = []
    for qid in sorted(chosen):
        moved = held_out_ids(train[qid]["answers"], rng)
        for source, default_split in ((train, "train"), (test, "test")):
            q = source[qid]
            for answer_id, text, label in q["answers"]:
                if text:
                    split = "test" if answer_id in moved else default_split
                    rows.append([answer_id, qid, q["question"], q["reference"], text, label, split])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "question_id", "question", "reference", "text", "label", "split"])
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows from {len(chosen)} questions to {OUT}")


if __name__ == "__main__":
    main()
