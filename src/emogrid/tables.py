"""Paper tables from the tidy aggregates: CSV, Markdown and LaTeX (booktabs).

Written by `emogrid aggregate` into the tables directory (fixed names, so Snakemake can
declare them):

- ``study_accuracy.*`` / ``study_f1_macro.*``: rows model x method (x variant), columns
  labels k x samples n; test-set mean ± 95% CI half-width over seeds (Student t), in %;
  the best mean per column (after rounding) is bold (Markdown/LaTeX) or starred (CSV); a
  cell with fewer seeds than the study's usual count says ``(n=2)``; ``–`` = no result.
- ``efficiency.*``: per model x method: trainable parameters and %, train time, peak
  memory, training throughput (means over the cells of that pair).
- ``per_class_f1.*``: test F1 per class, rows (k, class), columns model / method, at the
  largest sample size of each k (or the one asked for).
- ``method_comparisons.*``: paired method differences pooled over the study and per model.
- ``problems.md``: failed, unreadable and pending cells with their errors.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emogrid import outputs
from emogrid.atomic import write_text
from emogrid.cell_id import arm_label

SPLIT_NAMES = {"test": "test", "val": "validation"}
METRIC_NAMES = {"accuracy": "accuracy", "f1_macro": "macro-F1"}
TIE = "≈"
NO_LEARN = "†"
ALPHA = 0.05


def table_title(split: str, metric: str) -> str:
    """'Test accuracy (%)': every table names its split and metric."""
    return f"{SPLIT_NAMES.get(split, split).capitalize()} {METRIC_NAMES.get(metric, metric)} (%)"


def study_note(piv: dict) -> str:
    n_values = sorted(piv.get("n_values", []))
    n_text = (f"n = {n_values[0]} seed{'s' if n_values[0] != 1 else ''} per cell" if len(n_values) == 1
              else f"n = {'–'.join(map(str, [n_values[0], n_values[-1]]))} seeds; (n=…) marks cells "
                   f"with fewer than {piv['n_mode']}" if n_values else "no finished cells")
    where = SPLIT_NAMES.get(piv.get("split", "test"), "test")
    interval = (f"[95% interval]: percentile bootstrap over the {where} examples" if n_values == [1] else
                f"[95% interval]: two-stage percentile bootstrap (seeds resampled, then each drawn "
                f"seed's {where} examples)")
    return (f"mean over seeds {interval}, in %; {n_text}. Bold: best in its column and better than "
            f"the runner-up in a paired test on the same {where} examples, Holm-adjusted over this "
            f"table's {piv.get('n_tests', 0)} best-vs-runner-up comparisons (α = {ALPHA}); "
            f"{TIE}: best and runner-up not distinguishable (or no paired test possible). "
            f"{NO_LEARN}: did not learn (interval not above the majority-class baseline). "
            f"Baseline rows: majority class and uniform chance on the same {where} examples. "
            f"– = no finished seed.")


DASH = "–"
LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                 "^": r"\textasciicircum{}"}


def latex_escape(text: Any) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def _rank(levels: dict, key: str):
    order = {v: i for i, v in enumerate(levels.get(key, []))}
    return lambda v: (order.get(v, len(order)), str(v))


def _row_keys(frame: pd.DataFrame, levels: dict) -> list[str]:
    keys = ["model", "method", "variant"]
    if frame["dataset"].nunique(dropna=True) > 1:
        keys = ["dataset"] + keys
    return keys


def _sorted_rows(rows: list[tuple], keys: list[str], levels: dict) -> list[tuple]:
    rankers = [_rank(levels, k) for k in keys]
    return sorted(rows, key=lambda r: tuple(f(v) for f, v in zip(rankers, r)))


def study_pivot(summary: pd.DataFrame, metric: str, levels: dict, best: dict | None = None) -> dict[str, Any]:
    """Numbers behind a study table: row keys, column keys, records, best and tie marks.

    ``best``: {column: {"best": row, "runner_up": row, "p_holm": float}} from
    `best_tests` (paired tests on the same examples); without it nothing is marked best."""
    sub = summary[summary["metric"] == metric]
    if sub.empty:
        return {"rows": [], "cols": [], "row_keys": [], "cells": {}, "best": set(), "ties": set(),
                "n_mode": 0, "n_values": [], "baselines": {}, "n_tests": 0}
    row_keys = _row_keys(sub, levels)
    rows = _sorted_rows(list(dict.fromkeys(map(tuple, sub[row_keys].astype(object).values.tolist()))),
                        row_keys, levels)
    cols = sorted(dict.fromkeys(zip(sub["labels"].astype(int), sub["samples"].astype(int))))
    cells: dict[tuple, dict] = {}
    baselines: dict[tuple, dict] = {}
    for rec in sub.to_dict("records"):
        key = tuple(rec[k] for k in row_keys)
        col = (int(rec["labels"]), int(rec["samples"]))
        cells[(key, col)] = rec
        for b in ("majority", "uniform"):
            v = rec.get(f"baseline_{b}")
            if v is not None and not pd.isna(v):
                baselines.setdefault(b, {})[col] = v
    n_mode = int(sub["n"].mode().max())
    marks_best, marks_tie = set(), set()
    results = list(best.values()) if isinstance(best, dict) else list(best or [])
    for res in results:
        col = res["col"]
        if res.get("best") is None:
            continue
        if res.get("p_holm") is not None and res["p_holm"] < ALPHA:
            marks_best.add((res["best"], col))
        else:
            marks_tie.add((res["best"], col))
            if res.get("runner_up") is not None:
                marks_tie.add((res["runner_up"], col))
    return {"split": metric.partition("_")[0], "rows": rows, "cols": cols, "row_keys": row_keys,
            "cells": cells, "best": marks_best,
            "ties": marks_tie, "n_mode": n_mode, "n_values": sorted(set(int(x) for x in sub["n"])),
            "baselines": baselines, "n_tests": sum(1 for r in results
                                                   if r.get("p_holm") is not None and not pd.isna(r["p_holm"]))}


def best_tests(summary: pd.DataFrame, cells: pd.DataFrame, metric: str, levels: dict, reps: dict) -> list[dict]:
    """Per column (and dataset): the best and runner-up rows by mean, the paired test between
    them on the same examples, and Holm over the table's tests. [{"col", "best", "runner_up",
    "p", "p_holm"}]"""
    from emogrid import uncertainty
    from emogrid.stats import holm

    sub = summary[summary["metric"] == metric]
    if sub.empty:
        return []
    row_keys = _row_keys(sub, levels)
    split, _, name = metric.partition("_")
    ok = cells[cells["status"] == "ok"]
    out, pvals = [], []
    by = (["dataset"] if "dataset" in row_keys else []) + ["labels", "samples"]
    for group, grp in sub.groupby(by, sort=False):
        k, n = group[-2:]
        grp = grp.sort_values("mean", ascending=False, kind="stable")
        rows = [tuple(r) for r in grp[row_keys].astype(object).values.tolist()]
        res = {"best": rows[0] if rows else None, "runner_up": rows[1] if len(rows) > 1 else None,
               "p": np.nan}
        if len(rows) > 1:
            ids = []
            for r in rows[:2]:
                sel = ok[(ok["labels"] == k) & (ok["samples"] == n)]
                for key, value in zip(row_keys, r):
                    sel = sel[sel[key] == value]
                ids.append(dict(zip(sel["seed"], sel["cell_id"])))
            seeds = sorted(set(ids[0]) & set(ids[1]))
            if seeds:
                test = uncertainty.paired_test([ids[0][s] for s in seeds], [ids[1][s] for s in seeds],
                                               split, name, reps)
                if test is not None:
                    res["p"] = test["p"]
        res["col"] = (int(k), int(n))
        out.append(res)
        pvals.append(res["p"])
    adjusted = holm(pvals)
    for res, p in zip(out, adjusted):
        res["p_holm"] = None if np.isnan(p) else float(p)
    return out


def format_mean_ci(rec: dict | None, n_mode: int, scale: float = 100.0, digits: int = 1) -> str:
    if rec is None or rec.get("mean") is None or pd.isna(rec.get("mean")):
        return DASH
    text = f"{scale * rec['mean']:.{digits}f}"
    low, high = rec.get("ci95_boot_low"), rec.get("ci95_boot_high")
    half = rec.get("ci95_t_half")
    if low is not None and not pd.isna(low):
        text += f" [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"
    elif half is not None and not pd.isna(half):
        text += f" ± {scale * half:.{digits}f}"
    if int(rec.get("n", 0)) != n_mode:
        text += f" (n={int(rec['n'])})"
    if rec.get("_no_learn"):
        text += f" {NO_LEARN}"
    return text


def _row_label_cells(row: tuple, row_keys: list[str]) -> list[str]:
    values = dict(zip(row_keys, row))
    out = [str(values["dataset"])] if "dataset" in values else []
    return out + [str(values["model"]), arm_label(values["method"], values["variant"])]


def _header_names(row_keys: list[str]) -> list[str]:
    return (["Dataset"] if "dataset" in row_keys else []) + ["Model", "Method"]


def render_study(piv: dict, title: str) -> dict[str, str]:
    """The study pivot as {"csv", "md", "tex"} text."""
    rows, cols, row_keys = piv["rows"], piv["cols"], piv["row_keys"] or ["model", "method", "variant"]
    heads = _header_names(row_keys)
    col_names = [f"k={k} n={n}" for k, n in cols]
    note = study_note(piv)
    body_plain, body_md, body_tex = [], [], []
    for r in rows:
        labels = _row_label_cells(r, row_keys)
        plain, md, tex = list(labels), list(labels), [latex_escape(x) for x in labels]
        for c in cols:
            rec = piv["cells"].get((r, c))
            if rec is not None:
                rec = {**rec, "_no_learn": bool(rec.get("did_not_learn_flag"))}
            text = format_mean_ci(rec, piv["n_mode"])
            is_best, is_tie = (r, c) in piv["best"], (r, c) in piv.get("ties", set())
            if is_tie:
                text += f" {TIE}"
            plain.append(text + (" *" if is_best else ""))
            md.append(f"**{text}**" if is_best else text)
            t = latex_escape(text).replace("±", r"$\pm$").replace(DASH, "--").replace(TIE, r"$\approx$") \
                .replace(NO_LEARN, r"$^\dagger$")
            tex.append(rf"\textbf{{{t}}}" if is_best else t)
        body_plain.append(plain)
        body_md.append(md)
        body_tex.append(tex)
    for b, label in (("majority", "majority class"), ("uniform", "uniform chance")):
        values = piv.get("baselines", {}).get(b)
        if not values:
            continue
        labels = ([""] if "dataset" in row_keys else []) + ["(baseline)", label]
        cells_txt = [DASH if c not in values else f"{100 * values[c]:.1f}" for c in cols]
        body_plain.append(labels + cells_txt)
        body_md.append([f"*{x}*" if x else x for x in labels] + cells_txt)
        body_tex.append([latex_escape(x) for x in labels] + [x.replace(DASH, "--") for x in cells_txt])

    csv = pd.DataFrame(body_plain, columns=heads + col_names).to_csv(index=False)
    md_lines = [f"**{title}** — {note}", "", "| " + " | ".join(heads + col_names) + " |",
                "|" + "|".join([":--"] * len(heads) + ["--:"] * len(cols)) + "|"]
    md_lines += ["| " + " | ".join(r) + " |" for r in body_md]
    if not rows:
        md_lines.append("| " + " | ".join(["(no finished cells)"] + [""] * (len(heads) - 1)) + " |")
    md = "\n".join(md_lines) + "\n"

    ks = list(dict.fromkeys(k for k, _ in cols))
    spec = "l" * len(heads) + "".join("@{\\hspace{1em}}" + "r" * sum(1 for c in cols if c[0] == k)
                                      for k in ks)
    tex = [f"% {title}: {note}", "% needs \\usepackage{booktabs}", rf"\begin{{tabular}}{{{spec}}}",
           r"\toprule"]
    if cols:
        top = [""] * len(heads)
        rules, start = [], len(heads) + 1
        for k in ks:
            width = sum(1 for c in cols if c[0] == k)
            top.append(rf"\multicolumn{{{width}}}{{c}}{{$k={k}$}}")
            rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
            start += width
        tex.append(" & ".join(top) + r" \\")
        tex.append(" ".join(rules))
    tex.append(" & ".join(heads + [f"$n={n}$" for _, n in cols]) + r" \\")
    tex.append(r"\midrule")
    tex += [" & ".join(r) + r" \\" for r in body_tex]
    tex += [r"\bottomrule", r"\end{tabular}"]
    return {"csv": csv, "md": md, "tex": "\n".join(tex) + "\n"}


def _human(value: float) -> str:
    if value is None or pd.isna(value):
        return DASH
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= div:
            return f"{value / div:.2f}{unit}"
    return f"{value:.0f}"


EFFICIENCY_COLUMNS = [
    ("trainable_params", "Trainable params", lambda v: _human(v)),
    ("trainable_percent", "Trainable %", lambda v: DASH if pd.isna(v) else f"{v:.2f}"),
    ("train_seconds", "Train time (s)", lambda v: DASH if pd.isna(v) else f"{v:.1f}"),
    ("peak_memory_mb", "Peak memory (MB)", lambda v: DASH if pd.isna(v) else f"{v:.0f}"),
    ("train_samples_per_second", "Samples/s", lambda v: DASH if pd.isna(v) else f"{v:.1f}"),
    # GPU cells only (emogrid.train.gpu_plan_check): the planner's estimate, and measured / plan
    ("planned_gpu_mb", "Planned GPU (MB)", lambda v: DASH if pd.isna(v) else f"{v:.0f}"),
    ("gpu_plan_ratio", "Measured / plan", lambda v: DASH if pd.isna(v) else f"{v:.2f}"),
]


def efficiency_frame(cells: pd.DataFrame, levels: dict) -> pd.DataFrame:
    ok = cells[cells["status"] == "ok"]
    cols = [c for c, _, _ in EFFICIENCY_COLUMNS if c in ok.columns]
    keys = _row_keys(cells, levels) if len(ok) else ["model", "method", "variant"]
    if ok.empty or not cols:
        return pd.DataFrame(columns=keys + [c for c, _, _ in EFFICIENCY_COLUMNS] + ["cells", "memory_kind"])
    frame = ok.groupby(keys, dropna=False, sort=False)[cols].mean(numeric_only=True)
    frame["cells"] = ok.groupby(keys, dropna=False, sort=False).size()
    if "peak_memory_kind" in ok:
        frame["memory_kind"] = ok.groupby(keys, dropna=False, sort=False)["peak_memory_kind"].agg(
            lambda s: "/".join(sorted({str(v) for v in s.dropna()})))
    frame = frame.reset_index()
    order = _sorted_rows([tuple(r) for r in frame[keys].values.tolist()], keys, levels)
    frame["_o"] = [order.index(tuple(r)) for r in frame[keys].values.tolist()]
    return frame.sort_values("_o").drop(columns="_o").reset_index(drop=True)


def render_efficiency(frame: pd.DataFrame) -> dict[str, str]:
    keys = [k for k in ("dataset", "model", "method", "variant") if k in frame.columns]
    present = [(c, h, f) for c, h, f in EFFICIENCY_COLUMNS if c in frame.columns]
    heads = _header_names(keys) + [h for _, h, _ in present] + ["Cells"]
    body = []
    for rec in frame.to_dict("records"):
        row = _row_label_cells(tuple(rec[k] for k in keys), keys)
        row += [f(rec[c]) for c, _, f in present] + [str(int(rec["cells"]))]
        body.append(row)
    note = ("means over the finished cells of each model × method (all k, n, seeds); "
            "peak memory is GPU memory on CUDA, else process RSS"
            + ("; measured / plan = GPU memory reserved by PyTorch over `emogrid plan`'s estimate "
               "(the CUDA context is extra; above 1 means packing by plan may overfill a GPU)"
               if "gpu_plan_ratio" in frame.columns else ""))
    csv = frame.to_csv(index=False)
    md = "\n".join([f"**Efficiency** — {note}", "", "| " + " | ".join(heads) + " |",
                    "|" + "|".join([":--"] * (len(heads) - len(present) - 1) + ["--:"] * (len(present) + 1)) + "|"]
                   + ["| " + " | ".join(r) + " |" for r in body]) + "\n"
    spec = "l" * (len(heads) - len(present) - 1) + "r" * (len(present) + 1)
    tex = [f"% Efficiency: {note}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
           " & ".join(latex_escape(h) for h in heads) + r" \\", r"\midrule"]
    tex += [" & ".join(latex_escape(x).replace(DASH, "--") for x in r) + r" \\" for r in body]
    tex += [r"\bottomrule", r"\end{tabular}"]
    return {"csv": csv, "md": md, "tex": "\n".join(tex) + "\n"}


def per_class_selection(per_class: pd.DataFrame, samples: int | None = None) -> pd.DataFrame:
    """Test per-class F1, mean over seeds, at `samples` (default: the largest n of each k)."""
    if per_class.empty or "f1" not in per_class:
        return pd.DataFrame(columns=["dataset", "labels", "samples", "label", "model", "method",
                                     "variant", "f1", "n"])
    pc = per_class[per_class["split"] == "test"].copy()
    if samples is not None:
        pc = pc[pc["samples"] == samples]
    else:
        largest = pc.groupby(["dataset", "labels"])["samples"].transform("max")
        pc = pc[pc["samples"] == largest]
    keys = ["dataset", "labels", "samples", "label", "model", "method", "variant"]
    return (pc.groupby(keys, dropna=False, sort=False)["f1"].agg(["mean", "count"])
            .rename(columns={"mean": "f1", "count": "n"}).reset_index())


def render_per_class(sel: pd.DataFrame, levels: dict, samples: int | None = None) -> dict[str, str]:
    if sel.empty:
        empty = "no per-class results\n"
        return {"csv": sel.to_csv(index=False), "md": empty, "tex": "% " + empty}
    arms = _sorted_rows(list(dict.fromkeys(map(tuple, sel[["model", "method", "variant"]].values.tolist()))),
                        ["model", "method", "variant"], levels)
    arm_names = [f"{m} / {arm_label(me, v)}" for m, me, v in arms]
    multi_ds = sel["dataset"].nunique() > 1
    index_keys = (["dataset"] if multi_ds else []) + ["labels", "samples", "label"]
    wide = sel.pivot_table(index=index_keys, columns=["model", "method", "variant"], values="f1",
                           aggfunc="mean", sort=False)
    ds_rank = _rank(levels, "dataset")
    first_seen = {lab: i for i, lab in enumerate(dict.fromkeys(sel["label"]))}
    wide = wide.loc[sorted(wide.index, key=lambda idx: (
        (ds_rank(idx[0]),) if multi_ds else ()) + tuple(int(x) for x in idx[-3:-1])
        + (first_seen.get(idx[-1], 0),))]
    rows = []
    for idx, rec in wide.iterrows():
        idx = idx if isinstance(idx, tuple) else (idx,)
        vals = [rec.get(a, np.nan) for a in arms]
        rows.append(([str(x) for x in idx], vals))
    heads = (["Dataset"] if multi_ds else []) + ["k", "n", "Class"] + arm_names
    def fmt(v):
        return DASH if pd.isna(v) else f"{100 * v:.1f}"

    csv = pd.DataFrame([i + [None if pd.isna(v) else v for v in vals] for i, vals in rows],
                       columns=heads).to_csv(index=False)
    seeds = sorted({int(x) for x in sel["n"].dropna()})
    seeds_txt = (f"{seeds[0]} seed{'s' if seeds[0] != 1 else ''}" if len(seeds) == 1
                 else f"{seeds[0]}–{seeds[-1]} seeds")
    note = f"test F1 per class (%), mean over seeds (n = {seeds_txt}), " + (
        f"at n = {samples} samples" if samples is not None else "at the largest sample size of each k")
    md = "\n".join([f"**Per-class F1** — {note}", "", "| " + " | ".join(heads) + " |",
                    "|" + "|".join([":--"] * (len(heads) - len(arms)) + ["--:"] * len(arms)) + "|"]
                   + ["| " + " | ".join(i + [fmt(v) for v in vals]) + " |" for i, vals in rows]) + "\n"
    spec = "l" * (len(heads) - len(arms)) + "r" * len(arms)
    tex = [f"% Per-class F1: {note}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
           " & ".join(latex_escape(h) for h in heads) + r" \\", r"\midrule"]
    tex += [" & ".join([latex_escape(x) for x in i] + [fmt(v).replace(DASH, "--") for v in vals]) + r" \\"
            for i, vals in rows]
    tex += [r"\bottomrule", r"\end{tabular}"]
    return {"csv": csv, "md": md, "tex": "\n".join(tex) + "\n"}


def render_comparisons(comparisons: pd.DataFrame, split: str = "test") -> dict[str, str]:
    """Per-subset paired comparisons (with Holm over the named family), then the descriptive
    pooled rows (no p-value: the pooled subsets share one test split)."""
    from emogrid.stats import RESAMPLES, format_p

    metrics = [f"{split}_accuracy", f"{split}_f1_macro"]
    sub = comparisons[comparisons["metric"].isin(metrics)] if len(comparisons) else comparisons
    per_subset = sub[sub["scope"] == "subset"] if len(sub) else sub
    pooled = sub[sub["scope"].isin(["study", "model"])] if len(sub) else sub
    heads = ["Model", "k", "n", "Metric", "A", "B", "Seeds", "Δ (A−B) pp", "95% interval", "Test", "p",
             "p (Holm)"]
    body = []
    for rec in per_subset.to_dict("records"):
        low, high = rec.get("boot_low"), rec.get("boot_high")
        if low is None or pd.isna(low):
            low, high = rec.get("ci95_t_low"), rec.get("ci95_t_high")
        interval = DASH if low is None or pd.isna(low) else f"[{100 * low:+.2f}, {100 * high:+.2f}]"
        metric = METRIC_NAMES.get(str(rec["metric"]).partition("_")[2], rec["metric"])
        body.append([str(rec["model"]), str(rec["labels"]), str(rec["samples"]), metric,
                     arm_label(rec["method_a"], rec["variant_a"]), arm_label(rec["method_b"], rec["variant_b"]),
                     str(int(rec["n_pairs"])), f"{100 * rec['diff_mean']:+.2f}", interval, str(rec.get("test") or DASH),
                     format_p(rec.get("p"), RESAMPLES), format_p(rec.get("p_holm"), RESAMPLES)
                     + (" *" if rec.get("significant") is True else "")])
    families = sorted({str(f) for f in per_subset.get("family", pd.Series(dtype=str)).dropna() if f})
    note = (f"{SPLIT_NAMES.get(split, split)} split; paired on identical examples (same model, dataset, k, n, "
            f"seed); Δ > 0: A scores higher; n (seeds) per row. Multiplicity: "
            + ("; ".join(families) if families else "no comparisons")
            + "; * = significant after Holm (α = 0.05). p-values are never 0: '< 0.001' is a bound.")
    pooled_lines = []
    for rec in pooled.to_dict("records"):
        scope = rec["dataset"] if rec["scope"] == "study" else f"{rec['dataset']} / {rec['model']}"
        metric = METRIC_NAMES.get(str(rec["metric"]).partition("_")[2], rec["metric"])
        pooled_lines.append(
            f"- {scope}, {metric}: {arm_label(rec['method_a'], rec['variant_a'])} − "
            f"{arm_label(rec['method_b'], rec['variant_b'])} = {100 * rec['diff_mean']:+.2f} pp on average over "
            f"{int(rec['n_pairs'])} matched cells; significant per subset: A {int(rec.get('sig_a') or 0)}, "
            f"B {int(rec.get('sig_b') or 0)} (descriptive: these subsets share one test split, so no "
            f"pooled p-value)")
    md = "\n".join([f"**Paired comparisons per subset** — {note}", "", "| " + " | ".join(heads) + " |",
                    "|" + "|".join([":--"] * 6 + ["--:"] * 3 + [":--"] + ["--:"] * 2) + "|"]
                   + ["| " + " | ".join(r) + " |" for r in body]
                   + (["", "**Pooled (descriptive)**", ""] + pooled_lines if pooled_lines else [])) + "\n"
    tex = [f"% Paired comparisons per subset: {note}", r"\begin{tabular}{llllllrrrlrr}", r"\toprule",
           " & ".join(latex_escape(h).replace("Δ", r"$\Delta$").replace("−", "--") for h in heads) + r" \\",
           r"\midrule"]
    tex += [" & ".join(latex_escape(x).replace("Δ", r"$\Delta$").replace(DASH, "--").replace("≤", r"$\leq$")
                       .replace("<", r"$<$") for x in r) + r" \\" for r in body]
    tex += [r"\bottomrule", r"\end{tabular}"]
    return {"csv": sub.to_csv(index=False), "md": md, "tex": "\n".join(tex) + "\n"}


def render_problems(cells: pd.DataFrame) -> str:
    lines = ["# Cells without results", ""]
    for status, title in (("failed", "Failed"),
                          ("invalid", "Invalid result files (not tabled; the next snakemake run trains "
                                      "them again)"),
                          ("pending", "Pending (expected by the config, no result yet)")):
        sub = cells[cells["status"] == status]
        lines.append(f"## {title}: {len(sub)}")
        lines.append("")
        for rec in sub.to_dict("records"):
            err = " ".join(str(x) for x in (rec.get("error_type"), rec.get("error"))
                           if x is not None and not (isinstance(x, float) and math.isnan(x)))
            hint = rec.get("hint")
            hint = f" (hint: {hint})" if isinstance(hint, str) and hint else ""
            lines.append(f"- `{rec['cell_id']}`" + (f": {err}{hint}" if err else ""))
        lines.append("")
    return "\n".join(lines)


TABLE_FILES = outputs.TABLE_FILES


def _with_learn_flags(summary: pd.DataFrame, split: str) -> pd.DataFrame:
    """Every summary row gets the did-not-learn flag of its group's `{split}_accuracy` row."""
    if summary.empty or "did_not_learn" not in summary:
        return summary.assign(did_not_learn_flag=False)
    keys = [c for c in summary.columns if c not in ("metric", "mean", "std", "n", "n_failed", "ci_method")
            and not c.startswith(("ci95_", "baseline_", "did_not_learn", "boot_"))]
    acc = summary[summary["metric"] == f"{split}_accuracy"][keys + ["did_not_learn"]]
    acc = acc.rename(columns={"did_not_learn": "did_not_learn_flag"})
    out = summary.merge(acc, on=keys, how="left")
    out["did_not_learn_flag"] = out["did_not_learn_flag"].fillna(False).astype(bool)
    return out


def write_tables(out_dir: str | Path, cells: pd.DataFrame, summary: pd.DataFrame,
                 per_class: pd.DataFrame, comparisons: pd.DataFrame, levels: dict,
                 per_class_samples: int | None = None, reps: dict | None = None,
                 report: dict | None = None, replication: pd.DataFrame | None = None) -> list[Path]:
    """Write every table (see TABLE_FILES); returns the paths written."""
    out_dir = Path(out_dir)
    written: list[Path] = []

    def put(stem: str, texts: dict[str, str]) -> None:
        for ext, text in texts.items():
            path = out_dir / f"{stem}.{ext}"
            write_text(path, text)
            written.append(path)

    split = (report or {}).get("split", "test")
    flagged = _with_learn_flags(summary, split)
    for stem, metric in (("study_accuracy", "accuracy"), ("study_f1_macro", "f1_macro")):
        name = f"{split}_{metric}"
        best = best_tests(flagged, cells, name, levels, reps or {})
        put(stem, render_study(study_pivot(flagged, name, levels, best), table_title(split, metric)))
    put("efficiency", render_efficiency(efficiency_frame(cells, levels)))
    put("per_class_f1", render_per_class(per_class_selection(per_class, per_class_samples), levels,
                                         per_class_samples))
    put("method_comparisons", render_comparisons(comparisons, split))
    from emogrid import replication as replication_mod

    frame = replication if replication is not None else pd.DataFrame(columns=replication_mod.OUT_COLUMNS)
    put("replication", replication_mod.render(frame))
    write_text(out_dir / "problems.md", render_problems(cells))
    written.append(out_dir / "problems.md")
    return written
