"""Synthetic results trees with known values, for the aggregate / tables / plots / status tests.

The study: dataset goemotions (single-label), models tiny-a and tiny-b, methods full and lora
(lora sweeps lora.r = 4, 8 -> two variants), labels k in {2, 4}, samples n in {100, 200},
seeds 0, 1, 2. Test accuracy of a cell is

    ACC = 0.50 + 0.05 * model_index + 0.02 * arm_index + 0.03 * (n == 200) - 0.04 * (k == 4)
          + SEED_OFFSET[seed]            (SEED_OFFSET = -0.01, 0, +0.01)

times ARM_SPREAD[arm_index] (1, 1, 2), so the mean over three seeds is the formula without the
offset, the std is 0.01 (0.02 for lora r=8) and the 95% t half-width is
t(0.975, 2) * std / sqrt(3). Macro-F1 = accuracy - 0.1.

Partial-grid features:
- MISSING: (tiny-b, full, k4, n200) has no files for any seed (a missing heatmap cell);
- FAILED: (tiny-a, lora r=8, k4, n100, seed 2) has only failure.json (two seeds ok);
- a multi-label dataset goemotions-ml: tiny-a / full / k4 / n100, seeds 0 and 1;
- INVALID: a truncated metrics.json (mixed-version / crashed writer) when asked for.
"""

from __future__ import annotations

import json
from pathlib import Path

MODELS = ["tiny-a", "tiny-b"]
# arms in study order: (method, variant, swept params)
ARMS = [("full", "", {}), ("lora", "lora.r=4", {"lora.r": 4}), ("lora", "lora.r=8", {"lora.r": 8})]
LABELS = [2, 4]
SAMPLES = [100, 200]
SEEDS = [0, 1, 2]
SEED_OFFSET = {0: -0.01, 1: 0.0, 2: 0.01}
# the last arm (lora r=8) spreads twice as much over seeds: std 0.02, so paired
# differences against it have std 0.01 and a non-degenerate interval
ARM_SPREAD = {0: 1, 1: 1, 2: 2}
MISSING = ("tiny-b", "full", "", 4, 200)
FAILED = ("tiny-a", "lora", "lora.r=8", 4, 100, 2)
LABEL_NAMES = ["admiration", "gratitude", "amusement", "love"]
T_975_DF2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)
T_975_DF1 = 12.706204736174698


def mean_acc(model: str, arm_index: int, k: int, n: int) -> float:
    return (0.50 + 0.05 * MODELS.index(model) + 0.02 * arm_index + 0.03 * (n == 200)
            - 0.04 * (k == 4))


def cell_id(dataset, model, method, variant, k, n, seed) -> str:
    mid = f"{method}/{variant}" if variant else method
    return f"{dataset}/{model}/{mid}/k{k}_n{n}/s{seed}"


def _metrics(acc: float, k: int, multi: bool = False) -> dict:
    labels = LABEL_NAMES[:k]
    per_class = {lab: {"precision": acc, "recall": acc, "f1": round(acc - 0.1 + 0.01 * i, 6),
                       "support": 10} for i, lab in enumerate(labels)}
    m = {"accuracy": acc, "precision_macro": acc, "recall_macro": acc, "f1_macro": acc - 0.1,
         "precision_weighted": acc, "recall_weighted": acc, "f1_weighted": acc - 0.05,
         "n": 10 * k, "labels": labels, "per_class": per_class}
    if multi:
        m.update(precision_micro=acc, recall_micro=acc, f1_micro=acc - 0.02, exact_match=acc)
    else:
        correct = round(10 * acc)
        m["confusion_matrix"] = [[correct if i == j else (10 - correct if j == (i + 1) % k else 0)
                                  for j in range(k)] for i in range(k)]
    return m


def _model_index(model: str) -> int:
    return MODELS.index(model) if model in MODELS else 0


def _efficiency(model: str, method: str, n: int) -> dict:
    total = 1_000_000 * (1 + _model_index(model))
    trainable = total if method == "full" else total // 100
    return {"trainable_params": trainable, "total_params": total,
            "trainable_percent": 100.0 * trainable / total,
            "train_seconds": n / 10 * (2.0 if method == "full" else 1.0), "eval_seconds": 1.0,
            "checkpoint_seconds": 4.0 if method == "full" else 0.5,
            "peak_memory_mb": 500.0 * (2 if method == "full" else 1) + 100 * _model_index(model),
            "peak_memory_kind": "rss", "train_samples_per_second": 30.0, "train_tokens_per_second": 900.0,
            "epochs_run": 3, "best_step": 20, "optimizer_steps": 30, "batch_size": 4, "grad_accum": 1}


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def write_cell(runs: Path, dataset, model, method, variant, swept, k, n, seed, acc,
               multi=False, failed=False, extra_prov=None) -> str:
    cid = cell_id(dataset, model, method, variant, k, n, seed)
    cell = {"dataset": dataset, "model": model, "method": method, "labels": k, "samples": n,
            "seed": seed, **swept}
    prov = {"versions": {"torch": "2.13.0"}, "device": "cpu", "precision": "fp32",
            "git_commit": None, "config_hash": "abc", "data_checksum": "def",
            "hostname": "h", "started": "2026-01-01T00:00:00", "finished": "2026-01-01T00:01:00"}
    prov.update(extra_prov or {})
    if failed:
        _write(runs / cid / "failure.json", {
            "cell": cell, "cell_id": cid, "status": "failed",
            "error": {"type": "OutOfMemoryError", "message": "CUDA out of memory",
                      "hint": "lower train.batch_size or use qlora"}, "provenance": prov})
    else:
        _write(runs / cid / "metrics.json", {
            "cell": cell, "cell_id": cid, "status": "ok",
            "val": _metrics(acc + 0.01, k, multi), "test": _metrics(acc, k, multi),
            "efficiency": _efficiency(model, method, n), "provenance": prov})
    return cid


def expected_grid(dataset: str = "goemotions") -> list[dict]:
    """Every cell of the single-label study (including MISSING and FAILED), grid order."""
    out = []
    for model in MODELS:
        for method, variant, swept in ARMS:
            for k in LABELS:
                for n in SAMPLES:
                    for seed in SEEDS:
                        out.append({"cell_id": cell_id(dataset, model, method, variant, k, n, seed),
                                    "dataset": dataset, "model": model, "method": method,
                                    "labels": k, "samples": n, "seed": seed, **swept})
    return out


def build_tree(runs: Path, invalid: bool = False, multi: bool = True) -> Path:
    runs = Path(runs)
    for model in MODELS:
        for ai, (method, variant, swept) in enumerate(ARMS):
            for k in LABELS:
                for n in SAMPLES:
                    if (model, method, variant, k, n) == MISSING:
                        continue
                    for seed in SEEDS:
                        acc = round(mean_acc(model, ai, k, n) + ARM_SPREAD[ai] * SEED_OFFSET[seed], 10)
                        failed = (model, method, variant, k, n, seed) == FAILED
                        write_cell(runs, "goemotions", model, method, variant, swept, k, n, seed,
                                   acc, failed=failed)
    if multi:
        for seed in (0, 1):
            write_cell(runs, "goemotions-ml", "tiny-a", "full", "", {}, 4, 100, seed,
                       0.3 + 0.02 * seed, multi=True)
    if invalid:
        path = runs / cell_id("goemotions", "tiny-c", "full", "", 2, 100, 0) / "metrics.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"cell": {"model": "tiny-c", ', encoding="utf-8")
    return runs


def build_big_tree(runs: Path, n_models=3, n_methods=6, labels=(2, 4, 8), samples=(100, 200, 400, 800),
                   seeds=(0, 1, 2, 3, 4)) -> int:
    """A full-size tree (default 3 x 6 x 3 x 4 x 5 = 1,080 cells) for the timing check."""
    count = 0
    for mi in range(n_models):
        for ai in range(n_methods):
            for k in labels:
                for n in samples:
                    for seed in seeds:
                        acc = 0.4 + 0.01 * mi + 0.005 * ai + 0.001 * seed
                        model = f"model-{mi}"
                        cid = cell_id("goemotions", model, f"method-{ai}", "", k, n, seed)
                        labs = [f"label{i}" for i in range(k)]
                        m = _metrics(acc, min(k, 4))
                        m["labels"] = labs
                        m["per_class"] = {lab: {"precision": acc, "recall": acc, "f1": acc, "support": 10}
                                          for lab in labs}
                        m["confusion_matrix"] = [[10 if i == j else 0 for j in range(k)] for i in range(k)]
                        _write(
                            runs / cid / "metrics.json",
                            {
                                "cell": {
                                    "dataset": "goemotions",
                                    "model": model,
                                    "method": f"method-{ai}",
                                    "labels": k,
                                    "samples": n,
                                    "seed": seed,
                                },
                                "cell_id": cid,
                                "status": "ok",
                                "val": m,
                                "test": m,
                                "efficiency": _efficiency("tiny-a", "lora", n),
                                "provenance": {"versions": {}, "device": "cpu", "config_hash": "abc"},
                            },
                        )
                        count += 1
    return count


# --------------------------------------------------------------------------- trees with predictions


def write_scored_cell(runs: Path, dataset: str, model: str, method: str, k: int, n: int, seed: int,
                      gold: dict, pred: dict, labels=None, provenance: dict | None = None,
                      spec: dict | None = None, ids: dict | None = None) -> str:
    """A finished single-label cell whose metrics.json and predictions.jsonl agree: metrics
    computed by emogrid.training.metrics from `gold[split]` / `pred[split]` (split: val, test).
    `provenance` is merged into metrics.json's, `spec` written as spec.json, `ids[split]` names
    the examples (default: "<split>-<i>")."""
    from emogrid.training.metrics import compute

    labels = labels or LABEL_NAMES[:k]
    ids = ids or {}
    cid = cell_id(dataset, model, method, "", k, n, seed)
    out = {split: compute(gold[split], pred[split], labels, False) for split in ("val", "test")}
    rows = [{"id": ids[split][i] if split in ids else f"{split}-{i}", "split": split, "gold": [int(g)],
             "pred": [int(p)], "probs": [1.0 if j == int(p) else 0.0 for j in range(k)]}
            for split in ("val", "test") for i, (g, p) in enumerate(zip(gold[split], pred[split]))]
    _write(
        runs / cid / "metrics.json",
        {
            "cell": {"dataset": dataset, "model": model, "method": method, "labels": k, "samples": n, "seed": seed},
            "cell_id": cid,
            "status": "ok",
            "val": out["val"],
            "test": out["test"],
            "efficiency": _efficiency("tiny-a", method, n),
            "provenance": {"versions": {}, "device": "cpu", "config_hash": "abc", **(provenance or {})},
        },
    )
    if spec is not None:
        _write(runs / cid / "spec.json", spec)
    path = runs / cid / "predictions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return cid


def scored_predictions(gold, accuracy: float, rng, k: int = 2):
    """Predictions right on a random `accuracy` share of `gold`, else the next class."""
    import numpy as np

    gold = np.asarray(gold)
    right = rng.random(gold.size) < accuracy
    return np.where(right, gold, (gold + 1) % k)


# --------------------------------------------------------------------------- two trees to diff

def diff_spec(lr: float = 1e-4) -> dict:
    """A cell spec (the sections `emogrid diff` compares) with one knob: the learning rate."""
    return {"cell": {}, "model": {"name": "m", "id": "org/m", "revision": None},
            "method": {"name": "lora", "peft": "lora"}, "lora": {"r": 8, "alpha": 16},
            "train": {"lr": lr, "epochs": 3, "batch_size": 16}}


def build_diff_pair(root: Path) -> tuple[Path, Path]:
    """Two results trees A and B (each `<root>/<a|b>/runs`) with known differences.

    Shared cells (goemotions, 2 labels, n 100, seed 0; 300 test examples, 150 per class):
    - m-same/lora: identical predictions in A and B: nothing moves;
    - m-lr/lora: accuracy 0.90 in A, 0.60 in B (B's spec has train.lr 0.001): differs significantly;
    - m-flip/lora: one test prediction flipped in B: moves by 1/300, not significantly;
    - m-fail/lora: ok in A, failed in B (status change);
    - m-data/lora: B scored other test examples (other ids): moves, untested.
    Only in A: m-gone/lora; only in B: m-new/lora. Every B cell records torch 2.14 (A: 2.13).
    """
    import numpy as np

    gold = np.array([0, 1] * 150)
    val_gold = np.array([0, 1] * 20)
    rng = np.random.default_rng(7)
    base = {"m-same": 0.8, "m-lr": 0.9, "m-flip": 0.8, "m-fail": 0.8, "m-data": 0.8, "m-gone": 0.8}
    preds = {m: scored_predictions(gold, acc, rng) for m, acc in base.items()}
    preds["m-new"] = scored_predictions(gold, 0.8, rng)
    val = scored_predictions(val_gold, 0.8, rng)
    a, b = Path(root) / "a", Path(root) / "b"

    def cell(tree, model, test_pred, torch="2.13.0", lr=1e-4, ids=None):
        write_scored_cell(tree / "runs", "goemotions", model, "lora", 2, 100, 0,
                          {"val": val_gold, "test": gold}, {"val": val, "test": test_pred},
                          provenance={"versions": {"torch": torch}, "hostname": f"host-{tree.name}"},
                          spec=diff_spec(lr), ids=ids)

    for model in ("m-same", "m-lr", "m-flip", "m-fail", "m-data", "m-gone"):
        cell(a, model, preds[model])
    cell(b, "m-same", preds["m-same"], torch="2.14.0")
    cell(b, "m-lr", scored_predictions(gold, 0.6, np.random.default_rng(8)), torch="2.14.0", lr=1e-3)
    flipped = preds["m-flip"].copy()
    flipped[0] = 1 - flipped[0]
    cell(b, "m-flip", flipped, torch="2.14.0")
    cell(b, "m-data", scored_predictions(gold, 0.7, np.random.default_rng(9)), torch="2.14.0",
         ids={"test": [f"other-{i}" for i in range(len(gold))]})
    cell(b, "m-new", preds["m-new"], torch="2.14.0")
    write_cell(b / "runs", "goemotions", "m-fail", "lora", "", {}, 2, 100, 0, 0.0, failed=True,
               extra_prov={"versions": {"torch": "2.14.0"}})
    return a, b


def _scores(gold, pred, labels: list[str]) -> dict:
    """What emogrid.training.metrics.compute gives for single-label predictions, in numpy (the
    study-sized trees below write hundreds of cells; compute's input checks cost ~40 ms each)."""
    import numpy as np

    k = len(labels)
    cm = np.zeros((k, k), dtype=int)
    np.add.at(cm, (gold, pred), 1)
    tp, support, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.where(precision + recall > 0,
                                                                              precision + recall, 1), 0.0)
    weights = support / support.sum()
    return {"accuracy": float(tp.sum() / cm.sum()), "precision_macro": float(precision.mean()),
            "recall_macro": float(recall.mean()), "f1_macro": float(f1.mean()),
            "precision_weighted": float(precision @ weights), "recall_weighted": float(recall @ weights),
            "f1_weighted": float(f1 @ weights), "n": int(cm.sum()), "labels": labels,
            "per_class": {lab: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                                "support": int(support[i])} for i, lab in enumerate(labels)},
            "confusion_matrix": cm.tolist()}


def write_scored_study(runs: Path, expected: list[dict], accuracy_of, n_test: int = 400, seed: int = 0,
                       shared: float = 0.7) -> None:
    """A scored cell (metrics.json + predictions.jsonl, as the train command writes them) for
    every cell of a study's expected grid (emogrid.results.collect.expected_cells). Each k has
    one balanced test set shared by every model, method, n and seed (as the official test split
    is); each (k, n, seed) one validation set of 10 per class. A cell gets right an
    `accuracy_of(cell)` share of the examples; a `shared` share of its errors falls on examples
    that are hard for every cell of that k, so cells agree more than chance, as trained models do;
    the rest is drawn once per arm (the cell without its seed), so its seeds differ only as much
    as `accuracy_of` says."""
    import numpy as np

    rng = np.random.default_rng(seed)
    sets: dict = {}
    for cell in expected:
        k = int(cell["labels"])
        if k not in sets:
            sets[k] = (np.arange(n_test) % k, rng.random(n_test))
        gold, hard = sets[k]
        val_gold = np.arange(10 * k) % k
        acc = accuracy_of(cell)
        arm = cell["cell_id"].rsplit("/", 1)[0]
        if arm not in sets:
            sets[arm] = np.where(rng.random(n_test) < shared, hard, rng.random(n_test))
        right = sets[arm] < acc
        pred = {"test": np.where(right, gold, (gold + 1) % k),
                "val": np.where(rng.random(val_gold.size) < acc, val_gold, (val_gold + 1) % k)}
        golds = {"test": gold, "val": val_gold}
        labels = [f"label{i}" for i in range(k)]
        axes = {key: v for key, v in cell.items() if key not in ("cell_id", "config_hash", "variant")}
        out = {split: _scores(golds[split], pred[split], labels) for split in ("val", "test")}
        rows = [{"id": f"{split}-{i}", "split": split, "gold": [int(g)], "pred": [int(p)],
                 "probs": [1.0 if j == int(p) else 0.0 for j in range(k)]}
                for split in ("val", "test") for i, (g, p) in enumerate(zip(golds[split], pred[split]))]
        _write(runs / cell["cell_id"] / "metrics.json",
               {"cell": axes, "cell_id": cell["cell_id"], "status": "ok", "val": out["val"], "test": out["test"],
                "efficiency": _efficiency("tiny-a", cell["method"], int(cell["samples"])),
                "provenance": {"versions": {}, "device": "cpu", "config_hash": cell["config_hash"]}})
        (runs / cell["cell_id"] / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows),
                                                                  encoding="utf-8")
