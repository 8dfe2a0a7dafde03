"""The study tables (``study_accuracy``, ``study_f1_macro``): rows model x method (x variant),
columns labels k x samples n, mean [95% interval] over seeds in %, with the best of each
column tested against its runner-up on the same examples (Holm over the table) and the
majority / uniform baselines as extra rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from emogrid.report.paper_tables.layout import (
    DASH,
    SPLIT_NAMES,
    header_names,
    latex_escape,
    row_keys_of,
    row_label_cells,
    sorted_rows,
)

TIE = "≈"
NO_LEARN = "†"
ALPHA = 0.05


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


def with_learn_flags(summary: pd.DataFrame, split: str) -> pd.DataFrame:
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


def study_pivot(summary: pd.DataFrame, metric: str, levels: dict, best: dict | None = None) -> dict[str, Any]:
    """Numbers behind a study table: row keys, column keys, records, best and tie marks.

    ``best``: {column: {"best": row, "runner_up": row, "p_holm": float}} from
    `best_tests` (paired tests on the same examples); without it nothing is marked best."""
    sub = summary[summary["metric"] == metric]
    if sub.empty:
        return {"rows": [], "cols": [], "row_keys": [], "cells": {}, "best": set(), "ties": set(),
                "n_mode": 0, "n_values": [], "baselines": {}, "n_tests": 0}
    row_keys = row_keys_of(sub, levels)
    rows = sorted_rows(list(dict.fromkeys(map(tuple, sub[row_keys].astype(object).values.tolist()))),
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
    from emogrid.results import uncertainty
    from emogrid.results.stats import holm

    sub = summary[summary["metric"] == metric]
    if sub.empty:
        return []
    row_keys = row_keys_of(sub, levels)
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


def render_study(piv: dict, title: str) -> dict[str, str]:
    """The study pivot as {"csv", "md", "tex"} text."""
    rows, cols, row_keys = piv["rows"], piv["cols"], piv["row_keys"] or ["model", "method", "variant"]
    heads = header_names(row_keys)
    col_names = [f"k={k} n={n}" for k, n in cols]
    note = study_note(piv)
    body_plain, body_md, body_tex = [], [], []
    for r in rows:
        labels = row_label_cells(r, row_keys)
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
