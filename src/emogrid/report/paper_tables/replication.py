"""The replication table (replication.csv / .md / .tex): published numbers next to what this study
measured (emogrid.results.replication builds the frame), rendered like the other paper tables."""

from __future__ import annotations

import pandas as pd

from emogrid.report.paper_tables.layout import DASH, METRIC_NAMES, SPLIT_NAMES, latex_escape
from emogrid.study.cell_id import arm_label


def render(frame: pd.DataFrame) -> dict[str, str]:
    """The replication table as {"csv", "md", "tex"}."""
    heads = ["Study", "Model", "Method", "k", "n", "Split / metric", "Published", "Measured [95% interval]",
             "Seeds", "Δ (pp)", "Inside"]
    body = []
    for rec in frame.to_dict("records"):
        what = (f"{SPLIT_NAMES.get(rec['split'], rec['split'])} "
                f"{METRIC_NAMES.get(rec['metric'], rec['metric'])}")
        if rec["status"] != "measured":
            measured, n, diff, inside = "not measured", "0", DASH, DASH
        else:
            measured = f"{rec['measured']:.1f}" + ("" if pd.isna(rec["low"])
                                                   else f" [{rec['low']:.1f}, {rec['high']:.1f}]")
            n, diff = str(int(rec["n"])), f"{rec['diff']:+.1f}"
            inside = DASH if rec["inside"] is None or pd.isna(rec["inside"]) else ("yes" if rec["inside"] else "no")
        body.append([str(rec["study"]), str(rec["model"]), arm_label(rec["method"], rec["variant"] or ""),
                     str(rec["labels"]), str(rec["samples"]), what, f"{rec['value']:.2f}", measured, n, diff, inside])
    note = ("published numbers (report.reference) vs this study, in %: measured = mean over seeds with its "
            "95% interval (bootstrap over seeds and evaluation examples; t over seeds where no example-level "
            "result exists); Δ = measured − published; Inside: the published value lies in the interval")
    md = "\n".join([f"**Replication** — {note}", "", "| " + " | ".join(heads) + " |",
                    "|" + "|".join([":--"] * 6 + ["--:"] * 4 + [":--"]) + "|"]
                   + ["| " + " | ".join(r) + " |" for r in body]
                   + ([] if body else ["| (no reference: set report.reference) |" + " |" * (len(heads) - 1)])) + "\n"
    tex = [f"% Replication: {note}", r"\begin{tabular}{llllllrrrrl}", r"\toprule",
           " & ".join(latex_escape(h).replace("Δ", r"$\Delta$") for h in heads) + r" \\", r"\midrule"]
    tex += [" & ".join(latex_escape(x).replace(DASH, "--") for x in r) + r" \\" for r in body]
    tex += [r"\bottomrule", r"\end{tabular}"]
    return {"csv": frame.to_csv(index=False), "md": md, "tex": "\n".join(tex) + "\n"}
