"""Evaluate a trained cell: val and test predictions in length order, scored by `emogrid.training.metrics`
(the same scores the Trainer's evaluations use for early stopping), with one prediction row
per example for predictions.jsonl.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Evaluated:
    """The val and test scores (metrics.json), predictions.jsonl's rows, and the time it took."""

    scores: dict[str, dict]  # "val" / "test" -> METRICS (docs/CONTRACTS.md)
    predictions: list[dict]
    eval_seconds: float


def evaluate(spec: dict, trainer, cell, data: dict) -> Evaluated:
    """Score the trained model of `cell` (build.BuiltCell) on the val and test splits of `data`
    (val only for a tuning cell)."""
    from emogrid.training.cell_data import evaluated_splits

    t0 = time.perf_counter()
    scores = {}
    predictions = []
    for split in evaluated_splits(spec):
        scores[split], rows = evaluate_split(trainer, cell.sets[split], data[split], cell.labels, cell.multi,
                                             float(spec["data"]["threshold"]), split)
        predictions.extend(rows)
    return Evaluated(scores=scores, predictions=predictions, eval_seconds=time.perf_counter() - t0)


def evaluate_split(trainer, dataset, rows, labels, multi, threshold, split):
    import numpy as np

    from emogrid.training import metrics as M

    # Predict in length order: large eval batches then pad to similar lengths (~3x less work).
    order = np.argsort([len(x["input_ids"]) for x in dataset], kind="stable")
    output = trainer.predict([dataset[i] for i in order], metric_key_prefix=split)
    sorted_logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    logits = np.empty_like(sorted_logits)
    logits[order] = sorted_logits
    result, probs, pred = M.from_logits(logits, [r["labels"] for r in rows], labels, multi, threshold)
    preds = M.pred_lists(pred, multi)
    out_rows = [{"id": r.get("id"), "split": split, "gold": list(r["labels"]), "pred": preds[i],
                 "probs": [round(float(p), 6) for p in probs[i]]} for i, r in enumerate(rows)]
    return result, out_rows


def trainer_metrics(labels, multi, spec):
    """`compute_metrics` for the Trainer's evaluations: the float scores of `emogrid.training.metrics`."""
    threshold = float(spec["data"]["threshold"])

    def compute(eval_pred):
        from emogrid.training import metrics as M

        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        gold = eval_pred.label_ids
        gold_lists = [list(map(int, row.nonzero()[0])) for row in gold] if multi else [[int(g)] for g in gold]
        result, _, _ = M.from_logits(logits, gold_lists, labels, multi, threshold)
        return {k: v for k, v in result.items() if isinstance(v, float)}

    return compute
