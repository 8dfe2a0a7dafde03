"""Example-level uncertainty for `emogrid aggregate`: intervals per cell and over seeds,
paired comparisons on identical test examples, baselines and the "did not learn" flag.

The statistics are in `emogrid.results.stats`; this module feeds them from a results tree:

- Cells whose `predictions.jsonl` is readable (single-label) are resampled together: one
  bootstrap weight matrix per distinct evaluation set (same example ids in the same order),
  shared by every cell scored on it. A per-cell interval, the seeds-then-examples interval of
  a seed mean, and a paired difference between two cells then all use the same resampled
  examples, which is what makes the comparison paired.
- Cells without predictions fall back to their confusion matrix (same per-cell interval in
  law, resampled alone); a comparison between such cells falls back to the paired t test over
  seeds (seed variation only) and says so in its `test` column.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from emogrid.results import stats

METRICS = ("accuracy", "f1_macro", "f1_micro")  # f1_micro: multi-label cells
SPLITS = ("val", "test")
# the exact line layout emogrid's atomic.write_jsonl gives predictions.jsonl (fast path)
_LINE = re.compile(r'^\{"id": (?:"((?:[^"\\]|\\.)*)"|null), "split": "(\w+)", "gold": \[(\d+)\], '
                   r'"pred": \[(\d+)\]', re.M)


# ----------------------------------------------------------------------------- reading


def read_outcomes(path: Path) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """{split: (key of its example ids, gold, pred)} from a predictions.jsonl.

    Single-label: gold and pred are class indices (n,). A file with any multi-label row
    gives multi-hot matrices (n, labels) for every row (labels = the length of `probs`).
    {} when the file is missing or unreadable (no example-level statistics)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        return {}
    n_lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
    found = _LINE.findall(text)
    multi = False
    if len(found) != n_lines:  # another layout, or multi-label rows: parse it properly
        found = []
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                return {}
            gold, pred = row.get("gold"), row.get("pred")
            if not (isinstance(gold, list) and isinstance(pred, list)):
                return {}
            multi = multi or len(gold) != 1 or len(pred) != 1
            found.append((str(row.get("id")), str(row.get("split")), gold, pred, len(row.get("probs") or [])))
    out: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}
    for split in SPLITS:
        rows = [r for r in found if r[1] == split]
        if not rows:
            continue
        key = hashlib.sha256("\n".join(r[0] for r in rows).encode()).hexdigest()[:16]
        key = f"{split}:{len(rows)}:{key}"
        if multi:
            width = max([r[4] for r in rows] + [max(r[2] + r[3], default=-1) + 1 for r in rows])
            gold_hot = np.zeros((len(rows), width), dtype=bool)
            pred_hot = np.zeros((len(rows), width), dtype=bool)
            for i, r in enumerate(rows):
                gold_hot[i, r[2]] = True
                pred_hot[i, r[3]] = True
            out[split] = (key, gold_hot, pred_hot)
            continue
        first = (lambda v: v[0]) if found and isinstance(found[0][2], list) else (lambda v: v)
        out[split] = (key,
                      np.fromiter((int(first(r[2])) for r in rows), dtype=np.int64, count=len(rows)),
                      np.fromiter((int(first(r[3])) for r in rows), dtype=np.int64, count=len(rows)))
    return out


def correct(gold: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per example: right (single-label) or exact match (multi-label)."""
    return (gold == pred).all(axis=1) if gold.ndim == 2 else gold == pred


# ----------------------------------------------------------------------------- replicates


def bootstrap_weights(n: int, rng: np.random.Generator, resamples: int = stats.RESAMPLES) -> np.ndarray:
    """(resamples, n) counts: how often each example is drawn in each resample of n."""
    idx = rng.integers(0, n, size=(resamples, n))
    idx += (np.arange(resamples) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=resamples * n).reshape(resamples, n).astype(np.float32)


def weighted_replicates(weights: np.ndarray, gold: np.ndarray, pred: np.ndarray, k: int) -> dict:
    """accuracy and macro-F1 of one cell under every resample of `weights` (shared examples)."""
    n = weights.sum(axis=1)
    right = gold == pred
    acc = weights[:, right].sum(axis=1) / n
    eye = np.eye(k, dtype=np.float32)
    tp = weights[:, right] @ eye[gold[right]]
    wrong = weights[:, ~right]
    fp = wrong @ eye[pred[~right]]
    fn = wrong @ eye[gold[~right]]
    return {"accuracy": acc.astype(np.float64), "f1_macro": stats.macro_f1_from_counts(tp, fp, fn)}


def example_replicates(cells: pd.DataFrame, confusions: dict, runs_dir: Path | None,
                       splits: tuple[str, ...] = ("test",)) -> dict:
    """{(cell_id, split): {"key", "accuracy", "f1_macro"}} for every ok single-label cell, for
    the evaluation splits asked for (the test split, plus val when the report shows it)."""
    reps: dict = {}
    ok = cells[cells["status"] == "ok"]
    by_set: dict[str, list] = {}
    multi_sets: dict[str, list] = {}
    for cid, _k, mode in zip(ok["cell_id"], ok["labels"], ok["mode"].fillna("single")):
        outcomes = read_outcomes(Path(runs_dir) / cid / "predictions.jsonl") if runs_dir else {}
        if mode == "multi":  # no confusion matrix: predictions only
            for split in splits:
                if split in outcomes and outcomes[split][1].ndim == 2:
                    key, gold, pred = outcomes[split]
                    multi_sets.setdefault(f"{key}:{gold.shape[1]}", []).append((cid, split, gold, pred))
            continue
        for split in splits:
            cm = confusions.get((cid, split))
            if split in outcomes and cm is not None and len(outcomes[split][1]) == int(np.sum(cm)):
                key, gold, pred = outcomes[split]
                by_set.setdefault(key, []).append((cid, split, gold, pred, len(cm)))
            elif cm is not None and np.sum(cm) > 0:
                r = stats.cell_replicates(cm, stats.rng_for(cid, split))
                reps[(cid, split)] = {"key": None, **r}
    for key, members in by_set.items():
        weights = bootstrap_weights(len(members[0][2]), stats.rng_for("examples", key))
        for (cid, split, gold, pred, _), r in zip(members, set_replicates(weights, members)):
            reps[(cid, split)] = {"key": key, "gold": gold, "pred": pred, **r}
    for key, members in multi_sets.items():
        weights = bootstrap_weights(len(members[0][2]), stats.rng_for("examples", key))
        for cid, split, gold, pred in members:
            reps[(cid, split)] = {"key": key, "gold": gold, "pred": pred,
                                  **multilabel_replicates(weights, gold, pred)}
    return reps


def multilabel_replicates(weights: np.ndarray, gold: np.ndarray, pred: np.ndarray) -> dict:
    """Exact-match accuracy, macro-F1 and micro-F1 (per-label binary counts, as scikit-learn
    with zero_division=0) of a multi-label cell under every resample of `weights`."""
    g, p = gold.astype(np.float32), pred.astype(np.float32)
    columns = np.concatenate([correct(gold, pred).astype(np.float32)[:, None], g * p, (1 - g) * p, g * (1 - p)],
                             axis=1)
    product = weights @ columns
    n_labels = gold.shape[1]
    tp = product[:, 1:1 + n_labels]
    fp = product[:, 1 + n_labels:1 + 2 * n_labels]
    fn = product[:, 1 + 2 * n_labels:]
    micro = stats.macro_f1_from_counts(tp.sum(axis=1, keepdims=True), fp.sum(axis=1, keepdims=True),
                                       fn.sum(axis=1, keepdims=True))
    return {"accuracy": (product[:, 0] / weights.sum(axis=1)).astype(np.float64),
            "f1_macro": stats.macro_f1_from_counts(tp, fp, fn), "f1_micro": micro}


def set_replicates(weights: np.ndarray, members: list) -> list[dict]:
    """`weighted_replicates` for every cell scored on one evaluation set, in one matrix product:
    per cell the columns right, onehot(pred) and onehot(gold) x right; the gold counts of
    each resample are shared by all cells of the set."""
    gold = members[0][2]
    k = max(m[4] for m in members)
    eye = np.eye(k, dtype=np.float32)
    gold_hot = eye[gold]
    blocks = []
    for _, _, _, pred, _ in members:
        right = (gold == pred).astype(np.float32)[:, None]
        blocks += [right, eye[pred], gold_hot * right]
    product = weights @ np.concatenate([gold_hot] + blocks, axis=1)
    n = weights.sum(axis=1)
    support = product[:, :k]
    out, col = [], k
    for _ in members:
        right = product[:, col]
        predicted = product[:, col + 1:col + 1 + k]
        tp = product[:, col + 1 + k:col + 1 + 2 * k]
        col += 1 + 2 * k
        out.append({"accuracy": (right / n).astype(np.float64),
                    "f1_macro": stats.macro_f1_from_counts(tp, predicted - tp, support - tp)})
    return out


def cell_columns(cells: pd.DataFrame, confusions: dict, reps: dict) -> pd.DataFrame:
    """Per-cell interval, baseline and did-not-learn columns, aligned with `cells`."""
    n = len(cells)
    cols: dict[str, np.ndarray] = {}
    position = {cid: i for i, cid in enumerate(cells["cell_id"])}
    for split in SPLITS:
        for m in METRICS:
            rows = [(position[cid], r[m]) for (cid, sp), r in reps.items()
                    if sp == split and cid in position and m in r]
            low, high = np.full(n, np.nan), np.full(n, np.nan)
            if rows:
                where = np.array([i for i, _ in rows])
                bounds = stats.percentile_intervals(np.stack([r for _, r in rows]))
                low[where], high[where] = bounds[:, 0], bounds[:, 1]
            cols[f"{split}_{m}_ci95_low"], cols[f"{split}_{m}_ci95_high"] = low, high
        for b, _fn in (("majority", stats.majority_baseline), ("uniform", stats.uniform_baseline)):
            for m in ("accuracy", "f1_macro"):
                cols[f"{split}_{b}_{m}"] = np.full(n, np.nan)
        for (cid, sp), cm in confusions.items():
            if sp != split or cid not in position or np.sum(cm) == 0:
                continue
            support = np.asarray(cm).sum(axis=1)
            for b, fn in (("majority", stats.majority_baseline), ("uniform", stats.uniform_baseline)):
                for m, v in fn(support).items():
                    cols[f"{split}_{b}_{m}"][position[cid]] = v
    out = pd.DataFrame(cols, index=cells.index)
    with np.errstate(invalid="ignore"):
        out["did_not_learn"] = out["test_accuracy_ci95_low"] <= out["test_majority_accuracy"]
    return out


# ----------------------------------------------------------------------------- over seeds


def _mean(values: list) -> float:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else np.nan


def _norm(values: tuple) -> tuple:
    """A group key that compares equal whatever pandas did to missing values and numbers."""
    out = []
    for v in values:
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            out.append("")
        elif isinstance(v, (float, np.floating)) and float(v).is_integer():
            out.append(str(int(v)))
        else:
            out.append(str(v))
    return tuple(out)


def _seed_stack(ids: list[str], split: str, metric: str, reps: dict):
    rows = [reps[(c, split)] for c in ids if (c, split) in reps and metric in reps[(c, split)]]
    if len(rows) != len(ids) or not rows:
        return None, False
    keys = {r["key"] for r in rows}
    shared = len(keys) == 1 and None not in keys
    return np.stack([r[metric] for r in rows]), shared


def seed_intervals(summary: pd.DataFrame, cells: pd.DataFrame, reps: dict, keys: list[str]) -> pd.DataFrame:
    """Adds ci95_boot_low/high (seeds, then examples), the baselines and did_not_learn."""
    summary = summary.copy()
    n = len(summary)
    low, high = np.full(n, np.nan), np.full(n, np.nan)
    majority, uniform = np.full(n, np.nan), np.full(n, np.nan)
    method = [""] * n
    ok = cells[cells["status"] == "ok"]
    ids_of: dict[tuple, list] = {}
    for cid, values in zip(ok["cell_id"], ok[keys].itertuples(index=False, name=None)):
        ids_of.setdefault(_norm(values), []).append(cid)
    base = {}
    for split in SPLITS:
        for m in ("accuracy", "f1_macro"):
            for b in ("majority", "uniform"):
                col = f"{split}_{b}_{m}"
                if col in ok:
                    base[col] = dict(zip(ok["cell_id"], ok[col]))
    targets = {f"{s}_{m}": (s, m) for s in SPLITS for m in METRICS}
    todo, replicate_rows = [], []
    for i, (metric_name, values) in enumerate(zip(summary["metric"], summary[keys].itertuples(index=False, name=None))):
        if metric_name not in targets:
            continue
        split, metric = targets[metric_name]
        ids = ids_of.get(_norm(values), [])
        stack, shared = _seed_stack(ids, split, metric, reps)
        if stack is None:
            continue
        rng = stats.rng_for("seeds", *sorted(ids), metric_name)
        replicate_rows.append(stats.seed_example_replicates(stack, rng, shared_examples=shared))
        todo.append(i)
        method[i] = stats.INTERVAL_METHOD if len(ids) == 1 else stats.SEED_INTERVAL_METHOD
        majority[i] = _mean([base.get(f"{split}_majority_{metric}", {}).get(c, np.nan) for c in ids])
        uniform[i] = _mean([base.get(f"{split}_uniform_{metric}", {}).get(c, np.nan) for c in ids])
    if todo:
        bounds = stats.percentile_intervals(np.stack(replicate_rows))
        low[todo], high[todo] = bounds[:, 0], bounds[:, 1]
    summary["ci95_boot_low"], summary["ci95_boot_high"] = low, high
    summary["boot_method"] = method
    summary["baseline_majority"], summary["baseline_uniform"] = majority, uniform
    with np.errstate(invalid="ignore"):
        summary["did_not_learn"] = summary["metric"].str.endswith("_accuracy") & (low <= majority)
    return summary


# ----------------------------------------------------------------------------- paired


def paired_test(ids_a: list[str], ids_b: list[str], split: str, metric: str, reps: dict) -> dict | None:
    """Paired bootstrap (seeds, then shared examples) of a - b; McNemar exact with one seed
    (accuracy). None when the pairs lack example-level replicates on identical examples."""
    ra = [reps.get((c, split)) for c in ids_a]
    rb = [reps.get((c, split)) for c in ids_b]
    if not ra or any(r is None or r["key"] is None or metric not in r for r in ra + rb):
        return None
    if any(a["key"] != b["key"] for a, b in zip(ra, rb)):
        return None
    diffs = np.stack([a[metric] - b[metric] for a, b in zip(ra, rb)])
    shared = len({r["key"] for r in ra}) == 1
    rng = stats.rng_for("paired", *ids_a, *ids_b, split, metric)
    d = stats.seed_example_replicates(diffs, rng, shared_examples=shared)
    low, high = stats.percentile_interval(d)
    out = {"boot_low": low, "boot_high": high, "p_boot": stats.bootstrap_se_p(d),
           "test": "paired bootstrap, seeds then shared test examples (p: bootstrap SE, normal)"
           if len(ids_a) > 1 else "paired bootstrap over shared test examples (p: bootstrap SE, normal)"}
    out["p"] = out["p_boot"]
    if len(ids_a) == 1 and metric == "accuracy":
        a, b = ra[0], rb[0]
        right_a, right_b = correct(a["gold"], a["pred"]), correct(b["gold"], b["pred"])
        out["p"] = stats.mcnemar_exact(int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b)))
        out["test"] = "McNemar exact (one seed)"
    return out


# ----------------------------------------------------------------------------- one metrics.json


def learning_check(metrics: dict, cell_id: str) -> dict | None:
    """{"did_not_learn", "accuracy", "low", "majority"} for a finished single-label cell, from
    its metrics.json alone: the test accuracy's percentile bootstrap interval (resampling the
    test examples through the confusion matrix) against the majority-class baseline. None
    when the file has no test confusion matrix (multi-label, older layouts)."""
    test = metrics.get("test") if isinstance(metrics, dict) else None
    cm = test.get("confusion_matrix") if isinstance(test, dict) else None
    try:
        cm = np.asarray(cm, dtype=np.int64)
    except (TypeError, ValueError):
        return None
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.sum() == 0:
        return None
    low, _ = stats.percentile_interval(stats.cell_replicates(cm, stats.rng_for(cell_id, "test"))["accuracy"])
    majority = stats.majority_baseline(cm.sum(axis=1))["accuracy"]
    return {"did_not_learn": bool(low <= majority), "accuracy": float(np.trace(cm) / cm.sum()),
            "low": low, "majority": majority}
