"""Paired comparisons (comparisons.csv) and the one family of tests per metric behind every claim
the report makes about them.

The research question names the family. Per metric (``test_accuracy``, ``test_f1_macro``, ...)
it holds, on the very same evaluation examples:

- question ``reference``: each arm (method + variant) against the reference arm
  (``report.reference_method``; ``full`` when the study has it), within each model and subset;
- question ``best``: in each column of the study table (dataset, k, n), the best row (model,
  arm; highest mean) against every other row: bold in the study table needs all of them.

A pair asked by both questions is one test. Holm or Benjamini-Hochberg (``report.correction``)
adjusts over the family, and the study table's marks and this table's stars read the same
adjusted p-values. Pooled rows (scope ``model``, ``study``) are descriptive: the subsets of a
dataset share one test split, so they are not independent units.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emogrid.errors import ConfigError
from emogrid.results import stats
from emogrid.results.levels import arm_order
from emogrid.study.cell_id import arm_label

# metrics summarised over seeds and compared between methods
COMPARE_METRICS = ["test_accuracy", "test_f1_macro"]
ALPHA = 0.05
COLUMNS = ["scope", "question", "dataset", "mode", "model", "model_b", "labels", "samples", "metric",
           "method_a", "variant_a", "method_b", "variant_b", "n_pairs", "mean_a", "mean_b", "diff_mean", "diff_std",
           "ci95_t_low", "ci95_t_high", "t_stat", "p_value", "boot_low", "boot_high", "se", "test", "claim",
           "p", "p_adj", "correction", "significant", "family", "n_units", "sig_a", "sig_b", "note", "wins_a",
           "wins_b", "ties"]
COLUMN_KEYS = ["dataset", "mode", "labels", "samples"]


def reference_arm(order: list[tuple[str, str]], reference_method: str | None) -> tuple[str, str] | None:
    """The reference arm: `reference_method`'s first variant in study order; without one, `full`
    when the study has it, else None (the family is then the best-vs-every-row question only)."""
    methods = list(dict.fromkeys(m for m, _ in order))
    if reference_method is None:
        reference_method = "full" if "full" in methods else None
        if reference_method is None:
            return None
    if reference_method not in methods:
        raise ConfigError(f"report.reference_method: {reference_method!r} is not a method of this study "
                          f"(expected one of {', '.join(methods) or 'none'})")
    return next(a for a in order if a[0] == reference_method)


def compare_methods(cells: pd.DataFrame, levels: dict[str, list] | None = None,
                    metrics: list[str] = COMPARE_METRICS, reps: dict | None = None,
                    reference_method: str | None = None, correction: str = "holm") -> pd.DataFrame:
    """The family's comparisons per subset (scope ``subset``), adjusted per metric, then the
    pooled reference comparisons per model and study (descriptive).

    A pair of seeds is matched when dataset, mode, labels, samples and seed agree: both rows
    trained and were evaluated on the very same examples. ``diff_mean`` = A - B (positive: A
    higher); B is the reference arm (question ``reference``) or the row compared with the
    column's best A (question ``best``). ``p`` is the test named in ``test`` (emogrid.results.
    uncertainty.paired_test: the example-aware SE over seeds, McNemar with one seed; the paired
    t over seeds when no predictions.jsonl exists); ``p_adj`` its adjustment over ``family``;
    ``significant`` = p_adj < 0.05. ``claim``: "methods" (over seeds) or "these two runs" (one
    seed: conditional on the two trained models)."""
    ok = cells[cells["status"] == "ok"]
    metrics = [m for m in dict.fromkeys(metrics) if m in ok.columns]
    if ok.empty or not metrics:
        return pd.DataFrame(columns=COLUMNS)
    ok = ok.assign(mode=ok["mode"].fillna("single"), arm=list(zip(ok["method"], ok["variant"])))
    order = arm_order(ok, levels)
    ref = reference_arm(order, reference_method)
    rank = {a: i for i, a in enumerate(order)}
    model_rank = {m: i for i, m in enumerate((levels or {}).get("model") or [])}
    rows = []
    for metric in metrics:
        values = ok.dropna(subset=[metric])
        groups = {}
        frame = values[COLUMN_KEYS + ["model", "arm", "seed", "cell_id", metric]]
        for dataset, mode, k, n, model, arm, seed, cid, value in frame.itertuples(index=False, name=None):
            groups.setdefault((dataset, mode, int(k), int(n)), {}).setdefault((model, arm), {})[seed] = (value, cid)
        pairs = []
        for col, by_row in groups.items():
            if ref is not None:
                for model in sorted({m for m, _ in by_row}, key=lambda m: (model_rank.get(m, len(model_rank)), m)):
                    if (model, ref) not in by_row:
                        continue
                    for arm in sorted({a for m, a in by_row if m == model and a != ref}, key=rank.get):
                        pairs.append(("reference", col, (model, arm), (model, ref)))
            means = {row: np.mean([v for v, _ in seeds.values()]) for row, seeds in by_row.items()}
            best = max(means, key=lambda r: (means[r], -model_rank.get(r[0], len(model_rank)), -rank[r[1]]))
            for row in sorted(by_row, key=lambda r: (model_rank.get(r[0], len(model_rank)), r[0], rank[r[1]])):
                if row != best:
                    pairs.append(("best", col, best, row))
        rows += _family(pairs, groups, metric, reps or {}, ref, correction)
    subset = pd.DataFrame(rows)
    out = [subset]
    ref_rows = subset[subset["question"] == "reference"] if len(subset) else subset
    if len(ref_rows):
        for scope, keys in (("model", ["dataset", "mode", "model"]), ("study", ["dataset", "mode"])):
            out.append(_pooled(ref_rows, keys, scope))
    frame = pd.concat(out, ignore_index=True) if len(subset) else pd.DataFrame(columns=COLUMNS)
    for col in COLUMNS:
        if col not in frame:
            frame[col] = pd.NA
    for col in ("labels", "samples"):  # whole-number axes, blank on the pooled rows (as cells.csv has them)
        frame[col] = frame[col].astype("Int64")
    return frame[COLUMNS]


def _family(pairs: list, groups: dict, metric: str, reps: dict, ref, correction: str) -> list[dict]:
    """One row per (question, pair); one test per unordered pair; adjusted over the metric's pairs."""
    from emogrid.results import uncertainty

    split, _, name = metric.partition("_")
    tested: dict = {}
    rows = []
    for question, col, a, b in pairs:
        seeds_a, seeds_b = groups[col][a], groups[col][b]
        seeds = sorted(set(seeds_a) & set(seeds_b))
        rec = {"scope": "subset", "question": question, "dataset": col[0], "mode": col[1], "labels": col[2],
               "samples": col[3], "metric": metric, "model": a[0], "model_b": b[0], "method_a": a[1][0],
               "variant_a": a[1][1], "method_b": b[1][0], "variant_b": b[1][1], "n_pairs": len(seeds),
               "n_units": 1, "correction": correction}
        key = (col, frozenset([a, b]))
        if seeds:
            va = np.array([seeds_a[s][0] for s in seeds], dtype=float)
            vb = np.array([seeds_b[s][0] for s in seeds], dtype=float)
            rec.update(_seed_t(va, vb))
            if key not in tested:
                res = None
                if name in uncertainty.METRICS:
                    res = uncertainty.paired_test([seeds_a[s][1] for s in seeds], [seeds_b[s][1] for s in seeds],
                                                  split, name, reps)
                if res is None:
                    res = {"boot_low": np.nan, "boot_high": np.nan, "se": np.nan, "p": rec["p_value"],
                           "test": "paired t over seeds (seed variation only: no predictions.jsonl)"
                           if len(seeds) > 1 else "no test (one seed and no predictions.jsonl)",
                           "diff": rec["diff_mean"]}
                # the stored test is A - B of its first asking; a reversed pair flips the sign
                tested[key] = (a, {k: res[k] for k in ("boot_low", "boot_high", "se", "p", "test")})
            first, res = tested[key]
            sign = 1.0 if first == a else -1.0
            low, high = res["boot_low"], res["boot_high"]
            rec.update(res)
            rec["boot_low"], rec["boot_high"] = (low, high) if sign > 0 else (-high, -low)
            rec["claim"] = "these two runs" if len(seeds) == 1 else "methods (over seeds)"
        else:
            rec.update({"p": np.nan, "test": "no test (no seed in common)", "claim": ""})
        rec["_key"] = key
        rows.append(rec)
    keys = list(tested)
    adjusted = dict(zip(keys, stats.adjust([tested[k][1]["p"] for k in keys], correction)))
    counts = {q: len({r["_key"] for r in rows if r["question"] == q and np.isfinite(r["p"])})
              for q in ("reference", "best")}
    m = sum(1 for k in keys if np.isfinite(tested[k][1]["p"]))
    family = family_text(metric, m, counts, ref, correction)
    for r in rows:
        p_adj = adjusted.get(r.pop("_key"), np.nan)
        r["p_adj"] = p_adj
        r["significant"] = bool(np.isfinite(p_adj) and p_adj < ALPHA)
        r["family"] = family
    return rows


def family_text(metric: str, m: int, counts: dict, ref, correction: str) -> str:
    """The family's name as the captions print it."""
    split, _, name = metric.partition("_")
    what = {"accuracy": "accuracy", "f1_macro": "macro-F1"}.get(name, name)
    where = {"val": "validation"}.get(split, split)
    parts = []
    if ref is not None:
        parts.append(f"each arm vs {arm_label(*ref)} within model and subset ({counts['reference']})")
    parts.append(f"in each column the best row vs every other row ({counts['best']})")
    overlap = counts.get("reference", 0) + counts["best"] - m
    return (f"{where} {what}: {m} paired tests = " + " + ".join(parts)
            + (f" − {overlap} asked by both" if ref is not None and overlap > 0 else "")
            + f"; {stats.CORRECTIONS[correction][1]}, α = {ALPHA}")


def _seed_t(va: np.ndarray, vb: np.ndarray) -> dict:
    """Mean difference, its t interval and paired t over seeds (seed variation only), wins."""
    from scipy.special import stdtr, stdtrit

    d = va - vb
    n = d.size
    out = {"mean_a": float(va.mean()), "mean_b": float(vb.mean()), "diff_mean": float(d.mean()),
           "wins_a": int((d > 0).sum()), "wins_b": int((d < 0).sum()), "ties": int((d == 0).sum()),
           "diff_std": np.nan, "ci95_t_low": np.nan, "ci95_t_high": np.nan, "t_stat": np.nan, "p_value": np.nan}
    if n > 1:
        std = float(d.std(ddof=1))
        flat = std <= 1e-12 * max(1.0, abs(out["diff_mean"]))  # identical differences: no t test (never p = 0)
        half = float(stdtrit(n - 1, 0.975)) * std / np.sqrt(n)
        out.update(diff_std=0.0 if flat else std, ci95_t_low=out["diff_mean"] - (0 if flat else half),
                   ci95_t_high=out["diff_mean"] + (0 if flat else half))
        if not flat:
            t = out["diff_mean"] / (std / np.sqrt(n))
            out.update(t_stat=float(t), p_value=float(2 * stdtr(n - 1, -abs(t))))
    return out


def _pooled(subset: pd.DataFrame, keys: list[str], scope: str) -> pd.DataFrame:
    """Pooled reference rows: mean difference, wins and significant counts only (no test)."""
    pair = ["metric", "method_a", "variant_a", "method_b", "variant_b"]
    sub = subset.assign(w=subset["n_pairs"], wd=subset["diff_mean"] * subset["n_pairs"],
                        sig_a=subset["significant"] & (subset["diff_mean"] > 0),
                        sig_b=subset["significant"] & (subset["diff_mean"] < 0))
    out = sub.groupby(keys + pair, dropna=False, sort=False).agg(
        n_pairs=("w", "sum"), wd=("wd", "sum"), wins_a=("wins_a", "sum"), wins_b=("wins_b", "sum"),
        ties=("ties", "sum"), sig_a=("sig_a", "sum"), sig_b=("sig_b", "sum"),
        correction=("correction", "first"), family=("family", "first")).reset_index()
    out["diff_mean"] = out["wd"] / out["n_pairs"].where(out["n_pairs"] > 0)
    out = out.drop(columns="wd")
    out["scope"], out["question"], out["n_units"] = scope, "reference", 1
    if scope == "model":
        out["model_b"] = out["model"]
    out["note"] = ("descriptive: its subsets share one test split (not independent), so no pooled interval or "
                   "p-value; sig_a/sig_b count per-subset comparisons significant after the correction")
    return out
