"""The per-class F1 table: test F1 per class, rows (k, class), columns model / method, mean
over seeds at the largest sample size of each k (or the one asked for).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emogrid.report.paper_tables.layout import DASH, latex_escape, ranker, sorted_rows
from emogrid.study.cell_id import arm_label


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
    arms = sorted_rows(list(dict.fromkeys(map(tuple, sel[["model", "method", "variant"]].values.tolist()))),
                       ["model", "method", "variant"], levels)
    arm_names = [f"{m} / {arm_label(me, v)}" for m, me, v in arms]
    multi_ds = sel["dataset"].nunique() > 1
    index_keys = (["dataset"] if multi_ds else []) + ["labels", "samples", "label"]
    wide = sel.pivot_table(index=index_keys, columns=["model", "method", "variant"], values="f1",
                           aggfunc="mean", sort=False)
    ds_rank = ranker(levels, "dataset")
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
