"""Classification metrics per the METRICS contract (docs/CONTRACTS.md), via scikit-learn."""

from __future__ import annotations

import numpy as np


def probabilities(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    if multi_label:
        return 1.0 / (1.0 + np.exp(-logits))
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict(probs: np.ndarray, multi_label: bool, threshold: float = 0.5) -> np.ndarray:
    """Class indices (single-label) or a 0/1 matrix (multi-label, per-label threshold)."""
    if multi_label:
        return (probs >= threshold).astype(int)
    return probs.argmax(axis=1)


def multi_hot(label_lists, k: int) -> np.ndarray:
    out = np.zeros((len(label_lists), k), dtype=int)
    for i, labels in enumerate(label_lists):
        out[i, list(labels)] = 1
    return out


def compute(gold, pred, labels: list[str], multi_label: bool) -> dict:
    """METRICS for gold/pred: 1-D class indices, or 0/1 matrices in multi-label mode."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    gold, pred = np.asarray(gold), np.asarray(pred)
    k = len(labels)
    idx = list(range(k))
    kw = {"zero_division": 0} if multi_label else {"labels": idx, "zero_division": 0}
    out: dict = {"accuracy": float(accuracy_score(gold, pred))}
    averages = ("macro", "weighted", "micro") if multi_label else ("macro", "weighted")
    for avg in averages:
        p, r, f, _ = precision_recall_fscore_support(gold, pred, average=avg, **kw)
        out[f"precision_{avg}"], out[f"recall_{avg}"], out[f"f1_{avg}"] = float(p), float(r), float(f)
    if multi_label:
        out["exact_match"] = out["accuracy"]
    out["n"] = int(len(gold))
    out["labels"] = list(labels)
    p, r, f, s = precision_recall_fscore_support(gold, pred, average=None, **kw)
    out["per_class"] = {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                               "support": int(s[i])} for i, name in enumerate(labels)}
    if not multi_label:
        out["confusion_matrix"] = confusion_matrix(gold, pred, labels=idx).tolist()
    return out


def from_logits(logits, gold_lists, labels: list[str], multi_label: bool, threshold: float = 0.5):
    """(METRICS, probs, preds) from raw logits and gold label lists."""
    probs = probabilities(logits, multi_label)
    pred = predict(probs, multi_label, threshold)
    if multi_label:
        gold = multi_hot(gold_lists, len(labels))
    else:
        gold = np.array([g[0] for g in gold_lists])
    return compute(gold, pred, labels, multi_label), probs, pred


def pred_lists(pred: np.ndarray, multi_label: bool) -> list[list[int]]:
    if multi_label:
        return [np.flatnonzero(row).tolist() for row in pred]
    return [[int(p)] for p in pred]
