"""The replication table (replication.csv / .md / .tex): published numbers next to what this study
measured, the difference with its prediction interval and the verdict (emogrid.results.replication
builds the frame), rendered like the other paper tables."""

from __future__ import annotations

import pandas as pd

from emogrid.report.paper_tables.layout import DASH, METRIC_NAMES, SPLIT_NAMES, latex_escape
from emogrid.study.cell_id import arm_label


def empty_reason(reference: str | None) -> str:
    """What an empty table means: no reference file, or one whose rows match no arm of this study."""
    if not reference:
        return "(no reference: set report.reference)"
    return (f"(no published number matches a cell of this study: no row of {reference} names this study's "
            "dataset, model and method)")


def render(frame: pd.DataFrame, equivalence_pp: float | None = None, reference: str | None = None) -> dict[str, str]:
    """The replication table as {"csv", "md", "tex"}; `reference`: report.reference, for the
    empty table's message."""
    heads = ["Study", "Model", "Method", "k", "n", "Split / metric", "Published", "Paper n", "Measured [95% interval]",
             "Seeds", "Δ (pp) [95% prediction interval]", "Verdict"]
    body = []
    for rec in frame.to_dict("records"):
        what = (f"{SPLIT_NAMES.get(rec['split'], rec['split'])} "
                f"{METRIC_NAMES.get(rec['metric'], rec['metric'])}")
        n_eval = rec.get("n_eval")
        paper_n = DASH if n_eval is None or pd.isna(n_eval) else (
            f"{int(n_eval)}" + ("" if rec.get("n_eval_source") == "paper" else " (ours)"))
        if rec["status"] != "measured":
            measured, n, diff, verdict, paper_n = "not measured", "0", DASH, DASH, DASH
        else:
            measured = f"{rec['measured']:.1f}" + ("" if pd.isna(rec["low"])
                                                   else f" [{rec['low']:.1f}, {rec['high']:.1f}]")
            n = str(int(rec["n"]))
            diff = f"{rec['diff']:+.1f}" + ("" if pd.isna(rec.get("diff_low"))
                                            else f" [{rec['diff_low']:+.1f}, {rec['diff_high']:+.1f}]")
            verdict = str(rec.get("verdict") or DASH)
            if n == "1" and verdict != DASH:
                verdict += " (one seed: seed variance not included)"
        body.append([str(rec["study"]), str(rec["model"]), arm_label(rec["method"], rec["variant"] or ""),
                     str(rec["labels"]), str(rec["samples"]), what, f"{rec['value']:.2f}", paper_n, measured, n, diff,
                     verdict])
    margin = (f"replicated: the whole interval within ±{equivalence_pp:g} pp (report.equivalence_pp); "
              if equivalence_pp is not None else "")
    note = ("published numbers (report.reference) vs this study, in %: measured = mean over seeds with its 95% "
            "interval; Δ = measured − published, with a 95% prediction interval for one new run of the paper "
            "(our mean's SE, one run's seed variance from our seeds, and the binomial noise of the paper's n "
            "evaluation examples; '(ours)': the paper's n is not given, ours is assumed). Verdict: " + margin
            + "consistent: the interval includes 0; differs: it excludes 0")
    md = "\n".join([f"**Replication** — {note}", "", "| " + " | ".join(heads) + " |",
                    "|" + "|".join([":--"] * 6 + ["--:"] * 5 + [":--"]) + "|"]
                   + ["| " + " | ".join(r) + " |" for r in body]
                   + ([] if body else [f"| {empty_reason(reference)} |" + " |" * (len(heads) - 1)])) + "\n"
    tex = [f"% Replication: {note}", r"\begin{tabular}{llllllrrrrrl}", r"\toprule",
           " & ".join(latex_escape(h).replace("Δ", r"$\Delta$") for h in heads) + r" \\", r"\midrule"]
    tex += [" & ".join(latex_escape(x).replace(DASH, "--") for x in r) + r" \\" for r in body]
    tex += [r"\bottomrule", r"\end{tabular}"]
    return {"csv": frame.to_csv(index=False), "md": md, "tex": "\n".join(tex) + "\n"}
