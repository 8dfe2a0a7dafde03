"""Paired method comparisons (comparisons.csv): two arms of the same model on the very same
subsets and seeds, per subset with the paired t statistics, the paired bootstrap / McNemar test
on shared examples and Holm over the named family; pooled per model and study, descriptively.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emogrid.results.levels import arm_order
from emogrid.results.stats import holm

# metrics summarised over seeds and compared between methods
COMPARE_METRICS = ["test_accuracy", "test_f1_macro"]


def compare_methods(cells: pd.DataFrame, levels: dict[str, list] | None = None,
                    metrics: list[str] = COMPARE_METRICS, reps: dict | None = None) -> pd.DataFrame:
    """Paired differences between arms (method + variant) on the same model and subsets.

    A pair of seeds is matched when dataset, mode, model, labels, samples and seed agree:
    both arms trained and evaluated on the very same examples. The difference a - b is
    positive when arm a (earlier in the study's method order) scores higher.

    Per subset (scope ``subset``): the paired t statistics over seeds (seed variation only)
    and, where example-level replicates exist (``reps``, emogrid.results.uncertainty), a paired
    bootstrap of the difference over seeds and shared test examples (``boot_low/high``,
    ``p_boot``), McNemar's exact test with one seed (accuracy). ``p`` is the test named in
    ``test``; ``p_holm`` is Holm's adjustment over the family named in ``family`` (every
    per-subset comparison of that metric), ``significant`` = p_holm < 0.05.

    Pooled rows (scope ``model``, ``study``) average over subsets that share one test split
    (the subsets of a dataset draw from the same official test set), so they are not
    independent units: they report the mean difference and win counts, the number of
    per-subset comparisons significant either way, and no interval or p-value.
    """
    columns = ["scope", "dataset", "mode", "model", "labels", "samples", "metric",
               "method_a", "variant_a", "method_b", "variant_b", "n_pairs", "mean_a", "mean_b",
               "diff_mean", "diff_std", "ci95_t_low", "ci95_t_high", "t_stat", "p_value",
               "boot_low", "boot_high", "p_boot", "test", "p", "p_holm", "significant", "family",
               "n_units", "sig_a", "sig_b", "note", "wins_a", "wins_b", "ties"]
    ok = cells[cells["status"] == "ok"]
    metrics = [m for m in metrics if m in ok.columns]
    if ok.empty or not metrics:
        return pd.DataFrame(columns=columns)
    unit = ["dataset", "mode", "model", "labels", "samples", "seed"]
    ok = ok.assign(mode=ok["mode"].fillna("single"), arm=list(zip(ok["method"], ok["variant"])))
    order = arm_order(ok, levels)
    diffs = []
    for metric in metrics:
        wide = ok.pivot_table(index=unit, columns="arm", values=metric, aggfunc="mean")
        arms = [a for a in order if a in wide.columns]
        for i, a in enumerate(arms):
            for b in arms[i + 1:]:
                pair = wide[[a, b]].dropna()
                if pair.empty:
                    continue
                diff = pd.DataFrame({"d": pair[a] - pair[b], "a": pair[a], "b": pair[b]}).reset_index()
                diffs.append(diff.assign(metric=metric, method_a=a[0], variant_a=a[1],
                                         method_b=b[0], variant_b=b[1]))
    results = []
    if diffs:
        diff = pd.concat(diffs, ignore_index=True)
        diff["pos"], diff["neg"], diff["zero"] = diff["d"] > 0, diff["d"] < 0, diff["d"] == 0
        pair_keys = ["metric", "method_a", "variant_a", "method_b", "variant_b"]
        subset_keys = ["dataset", "mode", "model", "labels", "samples"]
        subset = _paired_stats(diff.groupby(pair_keys + subset_keys, dropna=False, sort=False))
        subset = _example_tests(subset, diff, ok, pair_keys + subset_keys, reps or {})
        results.append(subset.assign(scope="subset"))
        for scope, keys in (("model", ["dataset", "mode", "model"]), ("study", ["dataset", "mode"])):
            pooled = _paired_stats(diff.groupby(pair_keys + keys, dropna=False, sort=False))
            results.append(_descriptive_pool(pooled, subset, pair_keys + keys).assign(scope=scope))
    out = pd.concat(results, ignore_index=True) if results else pd.DataFrame()
    if out.empty:
        return pd.DataFrame(columns=columns)
    for col in columns:
        if col not in out:
            out[col] = pd.NA
    return out[columns]


HOLM_FAMILY = "Holm over all {m} per-subset comparisons of {metric} in this study"


def _example_tests(subset: pd.DataFrame, diff: pd.DataFrame, ok: pd.DataFrame, keys: list[str],
                   reps: dict) -> pd.DataFrame:
    """Adds the paired bootstrap / McNemar test per subset row, then Holm per metric."""
    from emogrid.results import uncertainty

    cell_of = {(r.dataset, r.mode, r.model, r.labels, r.samples, r.seed, r.method, r.variant): r.cell_id
               for r in ok[["dataset", "mode", "model", "labels", "samples", "seed", "method", "variant",
                            "cell_id"]].itertuples(index=False)}
    seeds_of = {k: list(v) for k, v in diff.groupby(keys, dropna=False, sort=False)["seed"]}
    new = {c: [] for c in ("boot_low", "boot_high", "p_boot", "test", "p")}
    for rec in subset.to_dict("records"):
        key = tuple(rec[k] for k in keys)
        seeds = seeds_of.get(key, [])
        base = (rec["dataset"], rec["mode"], rec["model"], rec["labels"], rec["samples"])
        ids_a = [cell_of.get(base + (s, rec["method_a"], rec["variant_a"])) for s in seeds]
        ids_b = [cell_of.get(base + (s, rec["method_b"], rec["variant_b"])) for s in seeds]
        split, _, metric = str(rec["metric"]).partition("_")
        res = None
        if None not in ids_a + ids_b and metric in uncertainty.METRICS:
            res = uncertainty.paired_test(ids_a, ids_b, split, metric, reps)
        if res is None:
            res = {"boot_low": np.nan, "boot_high": np.nan, "p_boot": np.nan, "p": rec["p_value"],
                   "test": "paired t over seeds (seed variation only: no predictions.jsonl)"}
        for c in new:
            new[c].append(res[c])
    subset = subset.assign(**new)
    subset["p"] = pd.to_numeric(subset["p"], errors="coerce")
    subset["p_holm"] = np.nan
    subset["family"] = ""
    for metric, idx in subset.groupby("metric", sort=False).groups.items():
        p = subset.loc[idx, "p"].to_numpy(dtype=float)
        subset.loc[idx, "p_holm"] = holm(p)
        subset.loc[idx, "family"] = HOLM_FAMILY.format(m=int(np.isfinite(p).sum()), metric=metric)
    subset["significant"] = subset["p_holm"] < 0.05
    subset["n_units"] = 1
    return subset


def _descriptive_pool(pooled: pd.DataFrame, subset: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Pooled rows: mean difference and counts only (their subsets share one test split)."""
    pooled = pooled.copy()
    for col in ("diff_std", "ci95_t_low", "ci95_t_high", "t_stat", "p_value"):
        pooled[col] = np.nan
    sig = subset.assign(sig_a=subset["significant"] & (subset["diff_mean"] > 0),
                        sig_b=subset["significant"] & (subset["diff_mean"] < 0))
    counts = sig.groupby(keys, dropna=False, sort=False)[["sig_a", "sig_b"]].sum().reset_index()
    pooled = pooled.merge(counts, on=keys, how="left")
    pooled["n_units"] = 1
    pooled["note"] = ("descriptive: its subsets share one test split (not independent), so no "
                      "pooled interval or p-value; sig_a/sig_b count per-subset comparisons "
                      "significant after Holm")
    return pooled


def _paired_stats(grouped) -> pd.DataFrame:
    """Mean difference, its 95% t interval and the paired t test, per group (vectorised)."""
    from scipy.special import stdtr, stdtrit

    out = grouped.agg(n_pairs=("d", "count"), diff_mean=("d", "mean"), diff_std=("d", "std"),
                      mean_a=("a", "mean"), mean_b=("b", "mean"), wins_a=("pos", "sum"),
                      wins_b=("neg", "sum"), ties=("zero", "sum")).reset_index()
    n = out["n_pairs"].to_numpy(dtype=float)
    mean = out["diff_mean"].to_numpy(dtype=float)
    std = out["diff_std"].to_numpy(dtype=float)
    df = np.where(n > 1, n - 1, np.nan)
    # identical differences (std ~ 0): the interval collapses, the test is decisive
    flat = (n > 1) & (std <= 1e-12 * np.maximum(1.0, np.abs(mean)))
    std = np.where(flat, 0.0, std)
    se = std / np.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        half = stdtrit(df, 0.975) * se
        # identical seed differences: the t test is undefined (never print p = 0)
        t_stat = np.where(flat, np.nan, mean / se)
        p = np.where(flat, np.nan, 2 * stdtr(df, -np.abs(t_stat)))
    out["diff_std"] = np.where(n > 1, std, np.nan)
    out["ci95_t_low"], out["ci95_t_high"] = mean - half, mean + half
    out["t_stat"], out["p_value"] = t_stat, np.where(n > 1, p, np.nan)
    for col in ("wins_a", "wins_b", "ties", "n_pairs"):
        out[col] = out[col].astype(int)
    return out
