"""The method comparisons table: per-subset paired differences between arms with their
interval, test and Holm-adjusted p-value, then the pooled rows (descriptive only).
"""

from __future__ import annotations

import pandas as pd

from emogrid.report.paper_tables.layout import DASH, METRIC_NAMES, SPLIT_NAMES, latex_escape
from emogrid.study.cell_id import arm_label


def render_comparisons(comparisons: pd.DataFrame, split: str = "test") -> dict[str, str]:
    """Per-subset paired comparisons (with Holm over the named family), then the descriptive
    pooled rows (no p-value: the pooled subsets share one test split)."""
    from emogrid.results.stats import RESAMPLES, format_p

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
