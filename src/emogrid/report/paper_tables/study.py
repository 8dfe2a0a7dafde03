"""The study tables (``study_accuracy``, ``study_f1_macro``): rows model x method (x variant),
columns labels k x samples n, mean [95% interval] over seeds in %, with the marks of the
metric's family of paired tests (emogrid.results.paired_comparisons): bold = the column's best
beats every other row; ≈ = not significantly worse than the best; ∘ = no test possible; and
the majority / uniform baselines as extra rows.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from emogrid.report.paper_tables.health import HEALTH_MARK, HEALTH_NOTE
from emogrid.report.paper_tables.layout import (
    DASH,
    SPLIT_NAMES,
    header_names,
    latex_escape,
    row_keys_of,
    row_label_cells,
    sorted_rows,
)
from emogrid.results.stats import FEW_PER_CLASS

TIE = "≈"
NO_TEST = "∘"
NO_LEARN = "†"
NOT_CHECKED = "n.c."
FEW = "‡"
ALPHA = 0.05


def study_note(piv: dict) -> str:
    """The caption: interval, n, what every mark means, the family and its correction."""
    n_values = sorted(piv.get("n_values", []))
    n_text = (f"n = {n_values[0]} seed{'s' if n_values[0] != 1 else ''} per cell" if len(n_values) == 1
              else f"n = {'–'.join(map(str, [n_values[0], n_values[-1]]))} seeds; (n=…) marks cells "
                   f"with fewer than {piv['n_mode']}" if n_values else "no finished cells")
    where = SPLIT_NAMES.get(piv.get("split", "test"), "test")
    if n_values == [1]:
        interval = ("Wilson score interval" if piv.get("metric") == "accuracy"
                    else "BCa bootstrap over the examples, stratified by class")
        interval = f"[95% interval]: {interval} on the {where} examples"
    else:
        interval = (f"[95% interval]: seed spread (t, S − 1 df) combined with the {where}-example bootstrap "
                    f"variance (normal) on a shared evaluation set, or t over seeds with a set per seed; one seed: "
                    f"the cell's own interval")
    runs = (" With one seed the marks compare these trained runs, not the methods." if n_values == [1] else "")
    family = piv.get("family") or "no paired tests"
    few = (f" {FEW}: a class has fewer than 10 {where} examples (macro-F1 interval approximate)."
           if piv.get("metric") == "f1_macro" else "")
    return (f"mean over seeds {interval}, in %; {n_text}. Family: {family}. Bold: best in its column and "
            f"significantly better than every other row of the column after the correction; {TIE}: not "
            f"significantly worse than the column's best (the best itself when any row ties with it); "
            f"{NO_TEST}: no paired test with the best possible.{runs} {NO_LEARN}: did not learn (Cohen's κ "
            f"interval includes 0: predictions not shown to depend on the gold label; {NO_LEARN}j/S: in j of S "
            f"seeds); {NOT_CHECKED}: learning not checked (multi-label).{few} Baseline rows: majority class and "
            f"uniform chance on the same {where} examples. – = no finished seed.")


def with_learn_flags(summary: pd.DataFrame, split: str | None = None) -> pd.DataFrame:
    """`did_not_learn_flag`: the row's own did-not-learn flag (every seed; each metric's row
    carries its own), False where not checked. `split` is accepted for older callers."""
    if summary.empty or "did_not_learn" not in summary:
        return summary.assign(did_not_learn_flag=False)
    flag = summary["did_not_learn"].map(lambda v: False if v is None or pd.isna(v) else str(v) == "True" or v is True)
    return summary.assign(did_not_learn_flag=flag.astype(bool))


def column_marks(comparisons: pd.DataFrame | None, metric: str, row_keys: list[str]) -> dict:
    """{"best", "ties", "untested": {(row, col)}, "family": str, "n_tests": int} from the
    metric's family (question ``best`` rows of comparisons.csv): bold where the best beats
    every other row, ≈ on rows not significantly worse, ∘ where no test was possible."""
    out = {"best": set(), "ties": set(), "untested": set(), "family": "", "n_tests": 0}
    if comparisons is None or len(comparisons) == 0:
        return out
    fam = comparisons[(comparisons["metric"] == metric) & (comparisons["scope"] == "subset")]
    if fam.empty:
        return out
    out["family"] = str(fam["family"].iloc[0])
    out["n_tests"] = int(fam.drop_duplicates(["question", "labels", "samples", "dataset", "model", "model_b",
                                              "method_a", "variant_a", "method_b", "variant_b"])["p"]
                         .notna().sum())
    best_rows = fam[fam["question"] == "best"]

    def row(rec: dict, side: str) -> tuple:
        values = {"dataset": rec["dataset"], "model": rec["model"] if side == "a" else rec["model_b"],
                  "method": rec[f"method_{side}"], "variant": rec[f"variant_{side}"] or ""}
        return tuple(values[k] for k in row_keys)

    for (_, _, k, n), grp in best_rows.groupby(["dataset", "mode", "labels", "samples"], sort=False):
        col = (int(k), int(n))
        recs = grp.to_dict("records")
        best = row(recs[0], "a")
        significant = [bool(r["significant"]) and r["diff_mean"] > 0 for r in recs]
        tested = [r["p"] is not None and not pd.isna(r["p"]) for r in recs]
        for r, sig, ok in zip(recs, significant, tested):
            if not ok:
                out["untested"].add((row(r, "b"), col))
            elif not sig:
                out["ties"].add((row(r, "b"), col))
        if all(significant):
            out["best"].add((best, col))
        elif any(ok and not sig for ok, sig in zip(tested, significant)):
            out["ties"].add((best, col))
    return out


def study_pivot(summary: pd.DataFrame, metric: str, levels: dict,
                comparisons: pd.DataFrame | None = None) -> dict[str, Any]:
    """Numbers behind a study table: row keys, column keys, records, the family's marks."""
    sub = summary[summary["metric"] == metric]
    split, _, name = metric.partition("_")
    if sub.empty:
        return {"rows": [], "cols": [], "row_keys": [], "cells": {}, "best": set(), "ties": set(), "untested": set(),
                "n_mode": 0, "n_values": [], "baselines": {}, "n_tests": 0, "family": "", "split": split,
                "metric": name}
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
    marks = column_marks(comparisons, metric, row_keys)
    return {"split": split, "metric": name, "rows": rows, "cols": cols, "row_keys": row_keys, "cells": cells,
            "best": marks["best"], "ties": marks["ties"], "untested": marks["untested"],
            "n_mode": int(sub["n"].mode().max()), "n_values": sorted(set(int(x) for x in sub["n"])),
            "baselines": baselines, "n_tests": marks["n_tests"], "family": marks["family"]}


def learn_mark(rec: dict) -> str:
    """† (every seed did not learn), †j/S (some), n.c. (not checked), '' (learned)."""
    flag = rec.get("did_not_learn")
    if flag is None or (not isinstance(flag, str) and pd.isna(flag)):
        return NOT_CHECKED if str(rec.get("mode")) == "multi" else ""
    if str(flag) == "True":
        return NO_LEARN
    j = rec.get("n_did_not_learn")
    if j is not None and not pd.isna(j) and int(j) > 0:
        return f"{NO_LEARN}{int(j)}/{int(rec.get('n', 0))}"
    return ""


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
    mark = learn_mark(rec)
    if mark:
        text += f" {mark}"
    if rec.get("_few"):
        text += f" {FEW}"
    return text


def render_study(piv: dict, title: str) -> dict[str, str]:
    """The study pivot as {"csv", "md", "tex"} text."""
    rows, cols, row_keys = piv["rows"], piv["cols"], piv["row_keys"] or ["model", "method", "variant"]
    heads = header_names(row_keys)
    col_names = [f"k={k} n={n}" for k, n in cols]
    note = study_note(piv)
    if any(rec.get("unhealthy_flag") for rec in piv["cells"].values()):
        note += " " + HEALTH_NOTE
    body_plain, body_md, body_tex = [], [], []
    for r in rows:
        labels = row_label_cells(r, row_keys)
        plain, md, tex = list(labels), list(labels), [latex_escape(x) for x in labels]
        for c in cols:
            rec = piv["cells"].get((r, c))
            if rec is not None:
                small = rec.get("min_class_n")
                rec = {**rec, "_few": piv.get("metric") == "f1_macro" and small is not None and not pd.isna(small)
                       and small < FEW_PER_CLASS}
            text = format_mean_ci(rec, piv["n_mode"])
            if rec is not None and rec.get("unhealthy_flag"):
                text += f" {HEALTH_MARK}"  # training health (emogrid.report.paper_tables.health)
            is_best = (r, c) in piv["best"]
            if (r, c) in piv.get("ties", set()):
                text += f" {TIE}"
            elif (r, c) in piv.get("untested", set()):
                text += f" {NO_TEST}"
            plain.append(text + (" *" if is_best else ""))
            md.append(f"**{text}**" if is_best else text)
            t = latex_escape(text).replace("±", r"$\pm$").replace(DASH, "--").replace(TIE, r"$\approx$") \
                .replace(NO_LEARN, r"$^\dagger$").replace(NO_TEST, r"$^\circ$").replace(FEW, r"$^\ddagger$") \
                .replace(HEALTH_MARK, r"$^\oslash$")
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
