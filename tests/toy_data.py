"""A toy three-label dataset a tiny random model learns in a few dozen steps (each label marked by
two of its own words among filler words), for tests that need a choice between learning rates to
mean something: as subset rows (`toy_rows`) or as a local csv dataset (`write_toy_csv`)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

WORDS = {0: ["love", "thank", "great", "amazing", "good"], 1: ["sad", "sorry", "loss", "cry", "miss"],
         2: ["angry", "stupid", "hate", "worst", "annoying"]}
NAMES = ["pos", "neg", "mad"]
FILLER = ["the", "this", "is", "so", "that", "it", "was", "and", "you", "really"]


def toy_rows(n: int, seed: int) -> list[dict]:
    """n rows, labels cycling 0, 1, 2, in the subset format (docs/CONTRACTS.md)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.sample(FILLER, 4) + rng.sample(WORDS[i % 3], 2)
        rng.shuffle(words)
        rows.append({"id": f"r{seed}-{i}", "text": " ".join(words), "labels": [i % 3]})
    return rows


def write_toy_csv(out: Path, train: int = 300, test: int = 90) -> Path:
    """train.csv and test.csv (columns text, label: a name), for `datasets: {toy: {path: out}}`."""
    out.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", train, 1), ("test", test, 3)):
        with open(out / f"{split}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            for row in toy_rows(n, seed):
                writer.writerow([row["text"], NAMES[row["labels"][0]]])
    return out
