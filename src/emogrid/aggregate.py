"""Collect finished grid cells into tidy tables (`emogrid aggregate`).

Reads every ``metrics.json`` and ``failure.json`` under a runs directory (layout and fields:
docs/CONTRACTS.md) and writes, under the tables directory:

``cells.csv`` / ``cells.parquet``
    one row per cell: every axis (dataset, model, method, variant, labels, samples, seed and
    each swept parameter as its own column, e.g. ``lora.r``), ``status`` (ok / failed /
    invalid / pending), the error of a failed cell, every scalar metric as
    ``{split}_{metric}`` (``val_accuracy``, ``test_f1_macro``, ...), every efficiency field
    under its own name (``trainable_params``, ``train_seconds``, ...) and a few provenance
    fields. With a study config (``--configfile``) the expected-but-missing cells are rows with status pending.
    Also, per cell (emogrid.uncertainty): ``{split}_{metric}_ci95_low/high`` (percentile
    bootstrap over the evaluation examples), ``{split}_majority_*`` / ``{split}_uniform_*``
    baselines and ``did_not_learn``.
``summary.csv`` / ``summary.parquet``
    one row per (cell without seed, metric): mean, std, n and a 95% confidence interval of
    the mean over seeds from Student's t (df = n - 1): ``ci95_t_half``, ``ci95_t_low``,
    ``ci95_t_high``; ``n_failed`` counts failed seeds of the group; for accuracy and F1 also
    ``ci95_boot_low/high`` (seeds, then examples; ``boot_method``), ``baseline_majority``,
    ``baseline_uniform`` and ``did_not_learn``.
``comparisons.csv``
    paired method comparisons: for two arms (method + variant) of the same model on the very
    same subsets (dataset, labels, samples, seed): per subset the mean difference a - b, the
    paired t statistics over seeds, the paired bootstrap interval and test on the shared
    examples (McNemar exact with one seed), Holm over the named family; pooled over the
    subsets of a model (scope ``model``) and of the study (scope ``study``) descriptively
    only (those subsets share one test split).
``per_class.csv``
    long table of per-class precision / recall / F1 / support per cell and split.
``levels.json``
    the order of models, methods, variants, label counts and sample sizes (config order when
    a study config is given) so every table and figure uses the same order.

Then the paper tables (`emogrid.tables`). Never crashes on a partial, mixed-version or
unreadable tree: bad files become rows with status ``invalid``; an empty tree is a clear
`EmogridError`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emogrid.atomic import atomic_path, staged_dir, write_json, write_text
from emogrid.cell_id import BASE_AXES as _BASE_AXES
from emogrid.cell_id import INT_AXES, format_variant, parse_cell_id
from emogrid.errors import EmogridError

BASE_AXES = list(_BASE_AXES)
# columns that identify a cell; swept parameters are added after these
ID_COLUMNS = ["cell_id", "dataset", "model", "method", "variant", "labels", "samples", "seed"]
META_COLUMNS = ["mode", "status", "error_type", "error", "hint"]
PROVENANCE_KEYS = ["device", "precision", "git_commit", "config_hash", "data_checksum", "finished"]
NON_SCALAR_METRICS = {"labels", "per_class", "confusion_matrix"}
# metrics summarised over seeds and compared between methods
COMPARE_METRICS = ["test_accuracy", "test_f1_macro"]
CI_METHOD = "Student t, 95%, two-sided, df = n - 1 (over seeds)"

# ----------------------------------------------------------------------------- reading


def _variant_of(swept: dict[str, Any]) -> str:
    """The variant of a row whose folder name has none: its recorded swept values (None: unset)."""
    return format_variant({k: v for k, v in swept.items() if v is not None})


def find_result_files(runs_dir: Path) -> dict[str, dict[str, Path]]:
    """cell_id -> {"metrics": path, "failure": path} for every result file under runs_dir."""
    found: dict[str, dict[str, Path]] = {}
    if not runs_dir.is_dir():
        return found
    for root, dirs, files in os.walk(runs_dir):
        # checkpoints and adapters never hold results; skip them (they can be large)
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "adapter"]
        for name, kind in (("metrics.json", "metrics"), ("failure.json", "failure")):
            if name in files:
                rel = Path(root).relative_to(runs_dir).as_posix()
                found.setdefault(rel, {})[kind] = Path(root) / name
    return found


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (int, float, str, bool))


def _mode(metrics: dict) -> str:
    return "multi" if ("exact_match" in metrics or "f1_micro" in metrics) else "single"


def cell_row(rel_id: str, paths: dict[str, Path], config_hash: str | None = None
             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One tidy row (and its per-class rows) from the result files of one cell folder.

    metrics.json wins over a stale failure.json. Each file is checked first
    (`emogrid.results`: the JSON Schema of its kind, its cell id against its folder, and its
    config hash against `config_hash` when given); a file that fails is never tabled: the row
    gets status ``invalid`` and the file and the reason as its error. Optional fields a file
    lacks become NaN; unknown scalar fields become columns (mixed-version trees aggregate side
    by side).
    """
    from emogrid import results

    row: dict[str, Any] = {"cell_id": rel_id}
    per_class: list[dict[str, Any]] = []
    kind = "metrics" if "metrics" in paths else "failure"
    checked = results.read(paths[kind], kind, cell_id=rel_id, config_hash=config_hash)

    axes = parse_cell_id(rel_id)
    if checked.valid:
        obj = checked.data
        axes.update({k: v for k, v in obj["cell"].items() if _scalar(v)}
                    if isinstance(obj.get("cell"), dict) else {})
    swept = {k: v for k, v in axes.items() if k not in BASE_AXES and k != "variant"}
    row.update({k: v for k, v in axes.items() if k != "variant"})
    row["variant"] = axes.get("variant") or _variant_of(swept)

    if not checked.valid:
        row.update(status="invalid", error_type="InvalidResult", error=checked.reason,
                   hint="the next `snakemake` run trains this cell again")
        return row, per_class
    obj = checked.data

    status = obj.get("status") or ("ok" if kind == "metrics" else "failed")
    if kind == "failure":
        status = "failed"
    row["status"] = str(status)
    error = obj.get("error")
    if isinstance(error, dict):
        row["error_type"] = error.get("type")
        row["error"] = error.get("message")
        row["hint"] = error.get("hint")
    elif error is not None:
        row["error"] = str(error)

    for split in ("val", "test"):
        metrics = obj.get(split)
        if not isinstance(metrics, dict):
            continue
        if split == "test" or "mode" not in row:
            row["mode"] = _mode(metrics)
        for key, value in metrics.items():
            if key in NON_SCALAR_METRICS or not _scalar(value):
                continue
            row[f"{split}_{key}"] = value
        if isinstance(metrics.get("confusion_matrix"), list):
            row[f"_confusion_{split}"] = metrics["confusion_matrix"]  # taken out by collect()
        pc = metrics.get("per_class")
        if isinstance(pc, dict):
            for label, vals in pc.items():
                if isinstance(vals, dict):
                    per_class.append({"cell_id": rel_id, "split": split, "label": str(label),
                                      **{k: vals.get(k) for k in ("precision", "recall", "f1", "support")}})
    eff = obj.get("efficiency")
    if isinstance(eff, dict):
        row.update({k: v for k, v in eff.items() if _scalar(v) and k not in row})
    prov = obj.get("provenance")
    if isinstance(prov, dict):
        row.update({k: prov.get(k) for k in PROVENANCE_KEYS if _scalar(prov.get(k))})
        # the exact sources a cell trained on: hub id + commit (emogrid.fetch) or local path
        from emogrid.sources import source_columns

        row.update(source_columns(prov))
    return row, per_class


def _natural_key(value: Any):
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def expected_cells(configfiles: Iterable[str] = (), config: dict | None = None) -> list[dict[str, Any]]:
    """The cells a study expects: [{"cell_id", axes..., "config_hash"}] in grid order.

    From config files (overlays on config.yaml, as `snakemake --configfile`) or from an
    already loaded config dict (the `aggregate` rule passes Snakemake's config as JSON).
    """
    from emogrid.config import finalize, load_config
    from emogrid.grid import expand_cells

    config = finalize(config) if config is not None else load_config(list(configfiles))
    out = []
    for cell in expand_cells(config):
        row = {"cell_id": str(cell.cell_id)}
        row.update({k: v for k, v in dict(cell.axes).items() if _scalar(v)})
        row["config_hash"] = cell.spec["config_hash"]
        out.append(row)
    return out


def collect(runs_dir: str | os.PathLike, expected: list[dict[str, Any]] | None = None,
            confusions: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cells, per_class) DataFrames from a runs directory; pending rows for ``expected``.

    ``confusions``, when given, receives {(cell_id, split): confusion matrix} (single-label)."""
    runs_dir = Path(runs_dir)
    files = find_result_files(runs_dir)
    rows, pc_rows = [], []
    hashes = {c["cell_id"]: c.get("config_hash") for c in expected or ()}
    for rel_id in sorted(files):
        row, pcs = cell_row(rel_id, files[rel_id], hashes.get(rel_id))
        for split in ("val", "test"):
            cm = row.pop(f"_confusion_{split}", None)
            if confusions is not None and cm is not None and row.get("status") == "ok":
                try:
                    confusions[(rel_id, split)] = np.asarray(cm, dtype=np.int64)
                except (TypeError, ValueError):
                    pass  # a malformed matrix: no example-level interval for this cell
        rows.append(row)
        pc_rows.extend(pcs)
    if expected:
        seen = {r["cell_id"] for r in rows}
        for cell in expected:
            if cell["cell_id"] not in seen:
                axes = {k: v for k, v in cell.items() if k not in ("variant", "config_hash")}
                swept = {k: v for k, v in axes.items() if k not in BASE_AXES and k != "cell_id"}
                variant = parse_cell_id(cell["cell_id"]).get("variant") or _variant_of(swept)
                rows.append({**axes, "variant": variant, "status": "pending"})
        expected_ids = {c["cell_id"] for c in expected}
        for row in rows:
            row["in_grid"] = row["cell_id"] in expected_ids
    if not rows:
        raise EmogridError(
            f"no results under {runs_dir}: found no metrics.json or failure.json"
            + ("" if runs_dir.is_dir() else " (the directory does not exist)"),
            hint="run the grid first (snakemake --cores all), or point --runs at the runs directory",
        )
    cells = _order_columns(pd.DataFrame.from_records(rows))
    per_class = pd.DataFrame.from_records(pc_rows) if pc_rows else pd.DataFrame(
        columns=["cell_id", "split", "label", "precision", "recall", "f1", "support"])
    if len(per_class):
        keys = [c for c in axis_columns(cells) if c != "cell_id"] + ["mode"]
        per_class = per_class.merge(cells[["cell_id"] + [k for k in keys if k in cells]],
                                    on="cell_id", how="left")
    return cells, per_class


def swept_columns(cells: pd.DataFrame) -> list[str]:
    known = set(ID_COLUMNS) | set(META_COLUMNS)
    return [c for c in cells.columns if "." in c and c not in known
            and not c.startswith(("val_", "test_"))]


def axis_columns(cells: pd.DataFrame) -> list[str]:
    return [c for c in ID_COLUMNS if c in cells.columns] + swept_columns(cells)


def _order_columns(cells: pd.DataFrame) -> pd.DataFrame:
    for col in ID_COLUMNS + META_COLUMNS:
        if col not in cells.columns:
            cells[col] = pd.NA if col not in ("variant",) else ""
    cells["variant"] = cells["variant"].fillna("").astype(str)
    for col in INT_AXES:
        cells[col] = pd.to_numeric(cells[col], errors="coerce").astype("Int64")
    for col in swept_columns(cells):
        values = pd.to_numeric(cells[col], errors="coerce")
        if values.notna().sum() == cells[col].notna().sum() and values.notna().any() \
                and (values.dropna() % 1 == 0).all() and not pd.api.types.is_bool_dtype(cells[col]):
            cells[col] = values.astype("Int64")
    first = axis_columns(cells) + META_COLUMNS
    metric_cols = sorted(c for c in cells.columns if c.startswith(("val_", "test_")))
    rest = [c for c in cells.columns if c not in first and c not in metric_cols]
    cells = cells[first + metric_cols + rest]
    sort_cols = [c for c in ("dataset", "model", "method", "variant", "labels", "samples", "seed")]
    return cells.sort_values(sort_cols, kind="stable", na_position="last").reset_index(drop=True)


# ----------------------------------------------------------------------------- statistics


def t_quantile(n: np.ndarray | pd.Series, level: float = 0.95) -> np.ndarray:
    """Two-sided Student t quantile for sample sizes n (df = n - 1); NaN where n < 2."""
    from scipy.special import stdtrit  # scipy.special imports far faster than scipy.stats

    n = np.asarray(n, dtype=float)
    df = np.where(n >= 2, n - 1, np.nan)
    return stdtrit(df, 0.5 + level / 2)


def group_columns(cells: pd.DataFrame) -> list[str]:
    """Columns that identify a cell without its seed."""
    return [c for c in axis_columns(cells) if c not in ("cell_id", "seed")]


def metric_columns(cells: pd.DataFrame) -> list[str]:
    """Numeric metric + efficiency columns worth summarising over seeds."""
    skip = set(axis_columns(cells)) | set(META_COLUMNS) | {"in_grid", "cell_id_recorded"}
    out = []
    for col in cells.columns:
        if col in skip or col in PROVENANCE_KEYS or col.endswith(("_ci95_low", "_ci95_high")) \
                or "_majority_" in col or "_uniform_" in col:
            continue
        series = cells[col]
        if pd.api.types.is_bool_dtype(series):
            continue
        if pd.api.types.is_numeric_dtype(series):
            out.append(col)
    return out


def summarize(cells: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, n and a 95% t interval over seeds per (cell without seed, metric)."""
    keys = group_columns(cells) + ["mode"]
    columns = keys + ["metric", "mean", "std", "n", "ci95_t_half", "ci95_t_low",
                      "ci95_t_high", "n_failed", "ci_method"]
    ok = cells[cells["status"] == "ok"]
    metrics = metric_columns(cells)
    if ok.empty or not metrics:
        return pd.DataFrame(columns=columns)
    grouped = ok.groupby(keys, dropna=False, sort=False)[metrics]
    mean = grouped.mean().stack(future_stack=True).rename("mean")
    std = grouped.std(ddof=1).stack(future_stack=True).rename("std")
    n = grouped.count().stack(future_stack=True).rename("n")
    out = pd.concat([mean, std, n], axis=1).reset_index()
    out = out.rename(columns={out.columns[len(keys)]: "metric"})
    out = out[out["n"] > 0].copy()
    out["n"] = out["n"].astype(int)
    half = t_quantile(out["n"]) * out["std"] / np.sqrt(out["n"])
    out["ci95_t_half"] = half
    out["ci95_t_low"] = out["mean"] - half
    out["ci95_t_high"] = out["mean"] + half
    fkeys = [k for k in keys if k != "mode"]  # a failed cell has no metrics, so no mode
    failed = (cells[cells["status"] == "failed"].groupby(fkeys, dropna=False, sort=False)
              .size().rename("n_failed").reset_index())
    out = out.merge(failed, on=fkeys, how="left") if len(failed) else out.assign(n_failed=0)
    out["n_failed"] = out["n_failed"].fillna(0).astype(int)
    out["ci_method"] = CI_METHOD
    return out[columns].reset_index(drop=True)


def compare_methods(cells: pd.DataFrame, levels: dict[str, list] | None = None,
                    metrics: list[str] = COMPARE_METRICS, reps: dict | None = None) -> pd.DataFrame:
    """Paired differences between arms (method + variant) on the same model and subsets.

    A pair of seeds is matched when dataset, mode, model, labels, samples and seed agree:
    both arms trained and evaluated on the very same examples. The difference a - b is
    positive when arm a (earlier in the study's method order) scores higher.

    Per subset (scope ``subset``): the paired t statistics over seeds (seed variation only)
    and, where example-level replicates exist (``reps``, emogrid.uncertainty), a paired
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
    order = _arm_order(ok, levels)
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
    from emogrid import uncertainty

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


def holm(p) -> np.ndarray:
    from emogrid.stats import holm as _holm

    return _holm(p)


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


def _arm_order(ok: pd.DataFrame, levels: dict[str, list] | None) -> list[tuple[str, str]]:
    arms = set(ok["arm"])
    methods = (levels or {}).get("method") or sorted({a[0] for a in arms}, key=_natural_key)
    rank = {m: i for i, m in enumerate(methods)}
    return sorted(arms, key=lambda a: (rank.get(a[0], len(rank)), _natural_key(a[0]), a[1]))


def compute_levels(cells: pd.DataFrame, expected: list[dict[str, Any]] | None = None) -> dict:
    """Order of every axis: first appearance in the expected grid (config order), else natural."""
    levels: dict[str, list] = {}
    source = None
    if expected:
        source = pd.DataFrame.from_records(
            [{**{k: v for k, v in c.items() if k != "config_hash"},
              "variant": parse_cell_id(c["cell_id"]).get("variant", "")} for c in expected])
    for col in ["dataset", "model", "method", "variant", "labels", "samples", "seed",
                *swept_columns(cells)]:
        values: list = []
        if source is not None and col in source:
            values = [v for v in dict.fromkeys(source[col].tolist()) if not _isna(v)]
            if col in INT_AXES or col == "variant":
                values = sorted(values, key=_natural_key) if col != "variant" else values
        if col in cells:
            extra = sorted({v for v in cells[col].tolist() if not _isna(v)} - set(values),
                           key=_natural_key)
            values = values + extra if values else extra
        if col in INT_AXES:
            values = sorted(values, key=_natural_key)
        levels[col] = [_jsonable(v) for v in values]
    if source is None or "variant" not in source:
        levels["variant"] = sorted(levels.get("variant", []), key=_variant_key)
    levels["from_config"] = expected is not None
    return levels


def _variant_key(variant: str):
    """Natural order: 'lora.r=8' before 'lora.r=16'; no variant first."""
    parts = re.split(r"(\d+(?:\.\d+)?(?:e-?\d+)?)", variant)
    return (variant != "", [(0, float(p), "") if i % 2 else (1, 0.0, p) for i, p in enumerate(parts)])


def _isna(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


# ----------------------------------------------------------------------------- writing


def _arrow_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Object columns with mixed types (mixed-version trees) become strings for parquet."""
    df = df.copy()
    for col in df.columns:
        if df[col].dtype == object:
            kinds = {type(v) for v in df[col].dropna().tolist()}
            if len(kinds) > 1:
                df[col] = df[col].map(lambda v: v if _isna(v) else str(v)).astype("string")
    return df


def write_frame(df: pd.DataFrame, path: Path, parquet: bool = False) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    if parquet:
        with atomic_path(path.with_suffix(".parquet")) as tmp:
            _arrow_safe(df).to_parquet(tmp, index=False)


def aggregate(runs_dir: str | os.PathLike, out_dir: str | os.PathLike,
              configfiles: list[str] | None = None, tables: bool = True,
              config: dict | None = None, expected: list[dict[str, Any]] | None = None,
              per_class_samples: int | None = None) -> dict[str, Any]:
    """Collect, summarise, compare, write. Returns the frames and timings.

    The expected grid (pending rows, axis order) comes from `expected`, else `config` (a
    config dict), else `configfiles`; without any, only the files found are reported.
    """
    t0 = time.perf_counter()
    if config is None and configfiles:
        from emogrid.config import load_config

        config = load_config(list(configfiles))
    if expected is None and config is not None:
        expected = expected_cells(config=config)
    report = report_settings(config)
    from emogrid import uncertainty

    confusions: dict = {}
    cells, per_class = collect(runs_dir, expected, confusions)
    from emogrid import replication as replication_mod

    reference = replication_mod.load_reference(report["reference"]) if report.get("reference") else None
    splits = tuple(dict.fromkeys(["test", report["split"]]
                                 + ([] if reference is None else sorted(set(reference["split"])))))
    reps = uncertainty.example_replicates(cells, confusions, Path(runs_dir), splits)
    extra = uncertainty.cell_columns(cells, confusions, reps)
    cells = pd.concat([cells, extra], axis=1)
    levels = compute_levels(cells, expected)
    levels["report"] = report  # what tables and figures show (emogrid.plots reads it)
    summary = uncertainty.seed_intervals(summarize(cells), cells, reps,
                                         group_columns(cells) + ["mode"])
    comparisons = compare_methods(cells, levels, reps=reps)
    arms = {(str(d), str(m), str(me)) for d, m, me in zip(cells["dataset"], cells["model"], cells["method"])}
    replication = None if reference is None else replication_mod.replication_frame(reference, summary, arms)
    out_dir = Path(out_dir)
    result = {"cells": cells, "summary": summary, "comparisons": comparisons,
              "per_class": per_class, "levels": levels, "replication": replication}
    # every file is written to a staging folder first and swapped in only when all succeeded:
    # a failure anywhere leaves the previous tables in place
    with staged_dir(out_dir) as stage:
        write_frame(cells, stage / "cells.csv", parquet=True)
        write_frame(summary, stage / "summary.csv", parquet=True)
        write_frame(comparisons, stage / "comparisons.csv")
        write_frame(per_class, stage / "per_class.csv")
        write_json(stage / "levels.json", levels)
        from emogrid import sources

        source_table = sources.sources_frame(cells)
        write_frame(source_table, stage / "sources.csv")
        write_text(stage / "sources.md", sources.to_markdown(source_table))
        if tables:
            from emogrid import tables as tables_mod

            written = tables_mod.write_tables(stage, cells, summary, per_class,
                                              comparisons, levels, per_class_samples,
                                              reps=reps, report=report, replication=replication)
            result["tables"] = [out_dir / Path(p).relative_to(stage) for p in written]
    result["seconds"] = time.perf_counter() - t0
    return result


DEFAULT_REPORT = {"metric": ["accuracy", "f1_macro"], "split": "test", "reference": None}


def report_settings(config: dict | None) -> dict:
    """`report:` of a config (what tables and figures show), with defaults when absent."""
    report = dict(DEFAULT_REPORT)
    report.update((config or {}).get("report") or {})
    if isinstance(report["metric"], str):
        report["metric"] = [report["metric"]]
    return report


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", default="results/runs",
                        help="runs directory holding {cell_id}/metrics.json (default: %(default)s)")
    parser.add_argument("--out", default="results/tables",
                        help="tables directory to write (default: %(default)s)")
    from emogrid.config_args import add_config_args

    add_config_args(parser)  # with a study config: pending rows for cells not yet run, its order
    parser.add_argument("--per-class-samples", type=int, default=None, metavar="N",
                        help="per-class F1 table at this sample size (default: the largest n of each k)")
    parser.add_argument("--no-tables", action="store_true",
                        help="write only the tidy data (cells, summary, comparisons), no paper tables")


def run(args: argparse.Namespace) -> int:
    from emogrid.config_args import config_from_args, config_given

    config = config_from_args(args) if config_given(args) else None
    result = aggregate(args.runs, args.out, tables=not args.no_tables,
                       config=config, per_class_samples=args.per_class_samples)
    counts = result["cells"]["status"].value_counts().to_dict()
    parts = ", ".join(f"{counts[k]} {k}" for k in ("ok", "failed", "invalid", "pending") if k in counts)
    print(f"emogrid aggregate: {len(result['cells'])} cells ({parts}) -> {args.out} "
          f"in {result['seconds']:.2f}s")
    invalid = result["cells"][result["cells"]["status"] == "invalid"]
    if len(invalid):
        print(f"emogrid aggregate: {len(invalid)} invalid result file(s), not tabled (listed in "
              f"{Path(args.out) / 'problems.md'}; the next snakemake run trains them again):",
              file=sys.stderr)
        for error in invalid["error"].head(20):
            print(f"  {error}", file=sys.stderr)
    return 0
