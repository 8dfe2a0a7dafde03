"""Example-level uncertainty for `emogrid aggregate`: intervals per cell and over seeds,
paired comparisons on identical evaluation examples, baselines and the learning check.

The statistics are in `emogrid.results.stats`; this module feeds them from a results tree:

- Cells whose `predictions.jsonl` is readable (single-label) are resampled together: one
  bootstrap weight matrix per distinct evaluation set (same example ids in the same order;
  resampled within each gold class), shared by every cell scored on it, which must have the
  same gold labels (checked). A seed mean's example variance and a paired difference then use
  the same resampled examples, which is what makes the comparison paired.
- Cells without predictions fall back to their confusion matrix (resampled alone); a
  comparison between such cells falls back to the paired t test over seeds and says so.
- Per cell: Wilson for accuracy, a BCa bootstrap for macro-F1 (basic for multi-label F1),
  Cohen's kappa with its interval: a cell "did not learn" when that interval includes 0.
- Over seeds: `seed_interval` (stats.seed_mean_interval: shared set -> the seed part with a
  t quantile plus the example part with a normal one; a set per seed -> t over the seeds);
  paired differences (`paired_test`) use the same interval and its matching p-value.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from emogrid.errors import DataError
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


def bootstrap_weights(n: int, rng: np.random.Generator, resamples: int = stats.RESAMPLES,
                      strata: np.ndarray | None = None) -> np.ndarray:
    """(resamples, n) counts: how often each example is drawn in each resample of n. With
    `strata` (the gold class of each example), each class is resampled within itself."""
    if strata is None:
        groups = [np.arange(n)]
    else:
        strata = np.asarray(strata)
        groups = [np.flatnonzero(strata == c) for c in np.unique(strata)]
    counts = np.zeros((resamples, n), dtype=np.float32)
    for idx in groups:
        draws = idx[rng.integers(0, idx.size, size=(resamples, idx.size))]
        draws += (np.arange(resamples) * n)[:, None]
        counts += np.bincount(draws.ravel(), minlength=resamples * n).reshape(resamples, n)
    return counts


def weighted_replicates(weights: np.ndarray, gold: np.ndarray, pred: np.ndarray, k: int) -> dict:
    """accuracy, macro-F1 and kappa of one cell under every resample of `weights`."""
    return set_replicates(weights, [("cell", "", gold, pred, k)])[0]


def set_replicates(weights: np.ndarray, members: list) -> list[dict]:
    """Replicates of every cell scored on one evaluation set, in one matrix product: per cell the
    columns right, onehot(pred) and onehot(gold) x right; the gold counts of each resample are
    shared by all cells of the set. `members`: (cell_id, split, gold, pred, k); every member must
    have the same gold labels (the set's), else a DataError names both cells."""
    gold = members[0][2]
    for cid, split, other, _, _ in members[1:]:
        if other.shape != gold.shape or not np.array_equal(other, gold):
            where = int(np.flatnonzero(other != gold)[0]) if other.shape == gold.shape else None
            raise DataError(f"{cid} and {members[0][0]} were scored on the same {split} examples (same ids) "
                            f"but with different gold labels"
                            + (f" (first at example {where})" if where is not None else "")
                            + ": their predictions.jsonl files disagree; rerun one of them")
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
                    "f1_macro": stats.macro_f1_from_counts(tp, predicted - tp, support - tp).astype(np.float64),
                    "kappa": stats.cohen_kappa_from_counts(tp, support, predicted).astype(np.float64)})
    return out


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
            "f1_macro": stats.macro_f1_from_counts(tp, fp, fn).astype(np.float64), "f1_micro": micro}


def _confusion(gold: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (gold, pred), 1)
    return cm


def set_entries(key: str, members: list, weights: np.ndarray) -> dict:
    """{(cell_id, split): entry} of single-label cells scored on one evaluation set `key`
    (`members`: (cell_id, split, gold, pred, k)) under the resamples `weights`."""
    out = {}
    for (cid, split, gold, pred, k), r in zip(members, set_replicates(weights, members)):
        cm = _confusion(gold, pred, k)
        out[(cid, split)] = {"key": key, "gold": gold, "pred": pred, "n": len(gold), "confusion": cm,
                             "point": stats.point_metrics(cm), "multi": False, **r}
    return out


def confusion_entry(confusion, rng: np.random.Generator) -> dict:
    """The entry of a cell known only by its confusion matrix (its evaluation set unidentified)."""
    cm = np.asarray(confusion, dtype=np.int64)
    return {"key": None, "n": int(cm.sum()), "point": stats.point_metrics(cm), "confusion": cm, "multi": False,
            **stats.cell_replicates(cm, rng)}


def example_replicates(cells: pd.DataFrame, confusions: dict, runs_dir: Path | None,
                       splits: tuple[str, ...] = ("test",)) -> dict:
    """{(cell_id, split): entry} for every ok cell with example-level results, for the
    evaluation splits asked for. An entry: "key" (its evaluation set, None when only the
    confusion matrix is known), "n", "point" {metric: value}, "confusion" (single-label),
    "multi", the replicates {metric: (B,)} and, with predictions, "gold" and "pred"."""
    reps: dict = {}
    ok = cells[cells["status"] == "ok"]
    by_set: dict[str, list] = {}
    multi_sets: dict[str, list] = {}
    seeds_of: dict[str, str] = {}  # evaluation set -> the name its resamples are seeded by
    datasets = ok["dataset"] if "dataset" in ok else [""] * len(ok)  # emogrid diff / publish pass no dataset
    for cid, mode, dataset, k in zip(ok["cell_id"], ok["mode"].fillna("single"), datasets, ok["labels"]):
        outcomes = read_outcomes(Path(runs_dir) / cid / "predictions.jsonl") if runs_dir else {}
        # one evaluation set = the same example ids in one dataset and label set (the gold
        # indices of an example depend on the subset's labels); its resamples are seeded by the
        # ids alone, so emogrid diff and publish (which pass no dataset) draw the same ones
        where = f"{dataset}:k{k}:"
        if mode == "multi":  # no confusion matrix: predictions only
            for split in splits:
                if split in outcomes and outcomes[split][1].ndim == 2:
                    key, gold, pred = outcomes[split]
                    seeds_of[f"{where}{key}:{gold.shape[1]}"] = f"{key}:{gold.shape[1]}"
                    multi_sets.setdefault(f"{where}{key}:{gold.shape[1]}", []).append((cid, split, gold, pred))
            continue
        for split in splits:
            cm = confusions.get((cid, split))
            if split in outcomes and cm is not None and len(outcomes[split][1]) == int(np.sum(cm)):
                key, gold, pred = outcomes[split]
                seeds_of[where + key] = key
                by_set.setdefault(where + key, []).append((cid, split, gold, pred, len(cm)))
            elif cm is not None and np.sum(cm) > 0:
                reps[(cid, split)] = confusion_entry(cm, stats.rng_for(cid, split))
    for key, members in by_set.items():
        gold = members[0][2]
        reps.update(set_entries(key, members, bootstrap_weights(len(gold), stats.rng_for("examples", seeds_of[key]),
                                                                strata=gold)))
    for key, members in multi_sets.items():
        weights = bootstrap_weights(len(members[0][2]), stats.rng_for("examples", seeds_of[key]))
        ones = np.ones((1, len(members[0][2])), dtype=np.float32)
        for cid, split, gold, pred in members:
            point = {m: float(v[0]) for m, v in multilabel_replicates(ones, gold, pred).items()}
            reps[(cid, split)] = {"key": key, "gold": gold, "pred": pred, "n": len(gold), "point": point,
                                  "confusion": None, "multi": True, **multilabel_replicates(weights, gold, pred)}
    return reps


# ----------------------------------------------------------------------------- one cell


def cell_interval(entry: dict, metric: str) -> tuple[float, float]:
    """The 95% interval of one cell's metric: Wilson for accuracy (exact match in multi-label
    mode), BCa (jackknife from the confusion matrix) for single-label macro-F1, basic bootstrap
    for multi-label F1, percentile for kappa."""
    theta = entry["point"][metric]
    if metric == "accuracy":
        low, high = stats.wilson_interval(round(theta * entry["n"]), entry["n"])
        return float(low), float(high)
    if metric == "kappa":
        return stats.percentile_interval(entry["kappa"])
    if metric == "f1_macro" and entry.get("confusion") is not None:
        jack, counts = stats.confusion_jackknife(entry["confusion"])
        return stats.bca_interval(theta, entry[metric], jack[metric], counts)
    return stats.basic_interval(theta, entry[metric])


def learned(entry: dict) -> bool | None:
    """False when the predictions are not shown to depend on the gold label: Cohen's kappa's
    95% interval includes 0 (a constant or random predictor). None: not checked (multi-label)."""
    if entry.get("multi") or "kappa" not in entry:
        return None
    return bool(cell_interval(entry, "kappa")[0] > 0)


def cell_columns(cells: pd.DataFrame, confusions: dict, reps: dict) -> pd.DataFrame:
    """Per-cell interval, kappa, baseline and did-not-learn columns, aligned with `cells`.

    `{split}_did_not_learn`: True / False, NA where not checked (multi-label, no example-level
    result); `did_not_learn` is the test split's. `{split}_min_class_n`: the fewest evaluation
    examples of a class (macro-F1 intervals are approximate below stats.FEW_PER_CLASS)."""
    n = len(cells)
    cols: dict[str, np.ndarray] = {}
    position = {cid: i for i, cid in enumerate(cells["cell_id"])}
    for split in SPLITS:
        for m in METRICS + ("kappa",):
            low, high = np.full(n, np.nan), np.full(n, np.nan)
            for (cid, sp), entry in reps.items():
                if sp == split and cid in position and m in entry:
                    low[position[cid]], high[position[cid]] = cell_interval(entry, m)
            if m == "kappa":
                cols[f"{split}_kappa"] = np.full(n, np.nan)
            cols[f"{split}_{m}_ci95_low"], cols[f"{split}_{m}_ci95_high"] = low, high
        flag = pd.array([pd.NA] * n, dtype="boolean")
        smallest = np.full(n, np.nan)
        for (cid, sp), entry in reps.items():
            if sp != split or cid not in position:
                continue
            i = position[cid]
            if "kappa" in entry["point"]:
                cols[f"{split}_kappa"][i] = entry["point"]["kappa"]
            ok = learned(entry)
            if ok is not None:
                flag[i] = not ok
            if entry.get("confusion") is not None:
                smallest[i] = np.asarray(entry["confusion"]).sum(axis=1).min()
        cols[f"{split}_did_not_learn"] = flag
        cols[f"{split}_min_class_n"] = smallest
        for b in ("majority", "uniform"):
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
    out["did_not_learn"] = out["test_did_not_learn"]
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


def design_of(keys: list) -> str:
    """How the seeds' evaluation sets relate: "shared" (one set), "separate" (one each),
    "unknown" (not identified: no predictions.jsonl, or some shared and some not)."""
    if None in keys:
        return "unknown"
    if len(set(keys)) == 1:
        return "shared"
    return "separate" if len(set(keys)) == len(keys) else "unknown"


def seed_interval(ids: list[str], split: str, metric: str, reps: dict) -> dict | None:
    """The mean over the seeds `ids` with its 95% interval (stats.seed_mean_interval), or None
    without example-level results for every seed. One seed: the cell's own interval."""
    entries = [reps.get((c, split)) for c in ids]
    if not entries or any(e is None or metric not in e for e in entries):
        return None
    if len(entries) == 1:
        low, high = cell_interval(entries[0], metric)
        method = (stats.CELL_ACCURACY_METHOD if metric == "accuracy"
                  else stats.CELL_F1_METHOD if entries[0].get("confusion") is not None
                  else "basic bootstrap over the evaluation examples, 95%")
        point = entries[0]["point"][metric]
        se = float(np.std(entries[0][metric], ddof=1))
        return {"mean": point, "se": se, "se_seed": np.nan, "se_examples": se, "dof": 0, "low": low, "high": high,
                "method": method, "design": "one seed", "n_eval": entries[0]["n"]}
    points = [e["point"][metric] for e in entries]
    design = design_of([e["key"] for e in entries])
    n_eval = float(np.mean([e["n"] for e in entries]))
    floor = stats.agresti_coull_variance(np.mean(points), n_eval) / len(points) if metric == "accuracy" else 0.0
    out = stats.seed_mean_interval(points, np.stack([e[metric] for e in entries]), design, float(floor))
    out["low"], out["high"] = max(out["low"], 0.0), min(out["high"], 1.0)
    return {**out, "design": design, "n_eval": n_eval}


def seed_intervals(summary: pd.DataFrame, cells: pd.DataFrame, reps: dict, keys: list[str]) -> pd.DataFrame:
    """Adds to the accuracy / F1 rows of `summary`: ci95_boot_low/high (the example-aware
    interval of the seed mean, method in boot_method), se_mean (its SE) = sqrt(se_seed^2 +
    se_examples^2) (the seed and evaluation-example parts), n_eval (evaluation examples per seed), eval_sets (shared / separate /
    unknown / one seed), the baselines, did_not_learn (every seed did not learn; NA: not
    checked), n_did_not_learn (seeds that did not learn) and min_class_n."""
    summary = summary.copy()
    n = len(summary)
    cols = {c: np.full(n, np.nan) for c in ("ci95_boot_low", "ci95_boot_high", "se_mean", "se_seed", "se_examples",
                                            "n_eval",
                                            "baseline_majority", "baseline_uniform", "n_did_not_learn",
                                            "min_class_n")}
    method, design = [""] * n, [""] * n
    flag = pd.array([pd.NA] * n, dtype="boolean")
    ok = cells[cells["status"] == "ok"]
    ids_of: dict[tuple, list] = {}
    for cid, values in zip(ok["cell_id"], ok[keys].itertuples(index=False, name=None)):
        ids_of.setdefault(_norm(values), []).append(cid)
    column_of = {col: dict(zip(ok["cell_id"], ok[col])) for col in ok.columns
                 if col.endswith(("_majority_accuracy", "_majority_f1_macro", "_uniform_accuracy",
                                  "_uniform_f1_macro", "_did_not_learn", "_min_class_n"))}
    targets = {f"{s}_{m}": (s, m) for s in SPLITS for m in METRICS}
    for i, (metric_name, values) in enumerate(zip(summary["metric"], summary[keys].itertuples(index=False, name=None))):
        if metric_name not in targets:
            continue
        split, metric = targets[metric_name]
        ids = ids_of.get(_norm(values), [])
        res = seed_interval(ids, split, metric, reps)
        if res is not None:
            cols["ci95_boot_low"][i], cols["ci95_boot_high"][i] = res["low"], res["high"]
            for c in ("se", "se_seed", "se_examples"):
                cols[c if c != "se" else "se_mean"][i] = res[c]
            cols["n_eval"][i] = res["n_eval"]
            method[i], design[i] = res["method"], res["design"]
        base = "f1_macro" if metric == "f1_macro" else "accuracy"
        for b in ("majority", "uniform"):
            cols[f"baseline_{b}"][i] = _mean([column_of.get(f"{split}_{b}_{base}", {}).get(c, np.nan) for c in ids])
        flags = [column_of.get(f"{split}_did_not_learn", {}).get(c, pd.NA) for c in ids]
        checked = [bool(f) for f in flags if not pd.isna(f)]
        if ids and len(checked) == len(ids):
            cols["n_did_not_learn"][i] = sum(checked)
            flag[i] = all(checked)
        smallest = [column_of.get(f"{split}_min_class_n", {}).get(c, np.nan) for c in ids]
        cols["min_class_n"][i] = np.nanmin(smallest) if np.isfinite(smallest).any() else np.nan
    for c, v in cols.items():
        summary[c] = v
    summary["boot_method"], summary["eval_sets"] = method, design
    summary["did_not_learn"] = flag
    return summary


# ----------------------------------------------------------------------------- paired


def paired_test(ids_a: list[str], ids_b: list[str], split: str, metric: str, reps: dict) -> dict | None:
    """Paired difference a - b over matched seeds on identical examples, with the SE of
    `seed_interval` (seed spread with t + shared-example variance with z; t over seeds when
    each seed has its own evaluation set). One seed: McNemar's exact test (accuracy) or the
    bootstrap SE (F1) of these two runs. Cells known only by their confusion matrices are
    compared unpaired (both example variances: conservative). None when example-level results
    are missing or the pairs were not scored on identical examples. {"diff", "boot_low", "boot_high", "se", "p", "test", "one_seed"}"""
    ra = [reps.get((c, split)) for c in ids_a]
    rb = [reps.get((c, split)) for c in ids_b]
    if not ra or any(r is None or metric not in r for r in ra + rb):
        return None
    unpaired = all(r["key"] is None for r in ra + rb)  # confusion matrices only: resampled apart
    if not unpaired and any(a["key"] is None or a["key"] != b["key"] for a, b in zip(ra, rb)):
        return None
    points = [a["point"][metric] - b["point"][metric] for a, b in zip(ra, rb)]
    # apart, a - b varies as var(a) + var(b): an upper bound for errors that agree more than chance
    diffs = np.stack([a[metric] - b[metric] for a, b in zip(ra, rb)])
    design = "unknown" if unpaired else design_of([r["key"] for r in ra])
    res = stats.seed_mean_interval(points, diffs, design)
    # accuracy moves in steps of one example: a continuity correction of one step of the seed
    # mean (as McNemar's |b - c| - 1), without which a handful of discordant examples reads as
    # stronger evidence than the exact test gives (5 of 5 one way: 0.02 instead of 0.06)
    step = 1.0 / (len(ids_a) * min(r["n"] for r in ra)) if metric == "accuracy" else 0.0
    p = stats.combined_p_value(np.sign(res["mean"]) * max(abs(res["mean"]) - step, 0.0), res["se_seed"],
                               res["se_examples"], res["dof"])
    out = {"diff": res["mean"], "boot_low": res["low"] - step, "boot_high": res["high"] + step, "se": res["se"],
           "p": p, "one_seed": len(ids_a) == 1}
    if unpaired:
        out["test"] = ("no predictions.jsonl: seed spread (t) + both cells' example variances (z), unpaired, "
                       "conservative") if len(ids_a) > 1 else "these two runs (one seed each): both cells' " \
                                                              "example variances (z), unpaired, conservative"
    elif len(ids_a) == 1:
        out["test"] = "these two runs (one seed each): bootstrap SE over the shared examples, normal"
        if metric == "accuracy":
            a, b = ra[0], rb[0]
            right_a, right_b = correct(a["gold"], a["pred"]), correct(b["gold"], b["pred"])
            out["p"] = stats.mcnemar_exact(int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b)))
            out["test"] = "these two runs (one seed each): McNemar exact"
    elif design == "shared":
        out["test"] = "paired over seeds: seed spread (t) + shared-example bootstrap SE (z)" + (
            ", continuity-corrected" if step else "")
    elif design == "separate":
        out["test"] = "paired t over seeds (each seed its own evaluation set)"
    else:
        out["test"] = "paired over seeds: seed spread (t) + example SE (z; sets not identified)"
    return out


# ----------------------------------------------------------------------------- one metrics.json


def learning_check(metrics: dict, cell_id: str) -> dict | None:
    """{"did_not_learn", "accuracy", "kappa", "low", "high", "majority"} for a finished
    single-label cell, from its metrics.json alone: Cohen's kappa with its 95% interval (the
    test examples resampled within each gold class through the confusion matrix); it did not
    learn when the interval includes 0. None without a test confusion matrix (multi-label,
    older layouts): not checked."""
    test = metrics.get("test") if isinstance(metrics, dict) else None
    cm = test.get("confusion_matrix") if isinstance(test, dict) else None
    try:
        cm = np.asarray(cm, dtype=np.int64)
    except (TypeError, ValueError):
        return None
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.sum() == 0:
        return None
    entry = confusion_entry(cm, stats.rng_for(cell_id, "test"))
    low, high = cell_interval(entry, "kappa")
    return {"did_not_learn": not learned(entry), "accuracy": entry["point"]["accuracy"],
            "kappa": entry["point"]["kappa"], "low": low, "high": high,
            "majority": stats.majority_baseline(cm.sum(axis=1))["accuracy"]}
