"""The recipe table (recipe.csv / .md / .tex): every value the study's cells train with, and for
each whether its paper states it (with the evidence from `study.stated`) or it is ours
(emogrid.study.recipe builds the rows)."""

from __future__ import annotations

import pandas as pd

from emogrid.report.paper_tables.layout import latex_escape

COLUMNS = ["key", "value", "cells", "config_key", "source", "evidence"]


def recipe_frame(config: dict | None) -> pd.DataFrame:
    """One row per recipe value; empty (with the columns) when aggregate was given no complete study
    (no config, or a partial one, as tests and hand-made calls pass)."""
    if config is None or not all(key in config for key in ("grid", "models", "data")):
        return pd.DataFrame(columns=COLUMNS)
    from emogrid.study.recipe import recipe_rows

    source = {"stated": "paper", "ours": "ours", "impossible": "impossible"}
    rows = [{"key": r.key, "value": r.text, "cells": r.scope or "all", "config_key": r.config_key,
             "source": source[r.category], "evidence": "; ".join(t for t in (r.stated, r.impossible) if t)}
            for r in recipe_rows(config)]
    return pd.DataFrame(rows, columns=COLUMNS)


def render(frame: pd.DataFrame) -> dict[str, str]:
    """The recipe table as {"csv", "md", "tex"}."""
    heads = ["Key", "Value", "Cells", "Source", "Where the paper states it"]
    body = [[str(r["key"]), str(r["value"]), str(r["cells"]), str(r["source"]), str(r["evidence"] or "")]
            for r in frame.to_dict("records")]
    stated = sum(r[3] == "paper" for r in body)
    cannot = sum(r[3] == "impossible" for r in body)
    note = (f"{len(body)} values, {stated} stated by the paper (study.stated: where, in our words), "
            f"{len(body) - stated - cannot} ours, {cannot} impossible here (study.impossible: why)")
    md = "\n".join([f"**Recipe** — {note}", "", "| " + " | ".join(heads) + " |", "|" + "|".join([":--"] * 5) + "|"]
                   + ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in body]
                   + ([] if body else ["| (no study config given to aggregate) |" + " |" * (len(heads) - 1)])) + "\n"
    tex = [f"% Recipe: {note}", r"\begin{tabular}{llllp{7cm}}", r"\toprule",
           " & ".join(heads) + r" \\", r"\midrule"]
    tex += [" & ".join(latex_escape(c) for c in r) + r" \\" for r in body]
    tex += [r"\bottomrule", r"\end{tabular}"]
    return {"csv": frame.to_csv(index=False), "md": md, "tex": "\n".join(tex) + "\n"}
