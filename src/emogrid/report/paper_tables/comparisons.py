"""The method comparisons table: the metric's family of paired tests per subset (each arm vs the
reference arm; each column's best row vs every other row) with interval, test and adjusted
p-value, then the pooled reference rows (descriptive only).
"""

from __future__ import annotations

import pandas as pd

from emogrid.report.paper_tables.layout import DASH, METRIC_NAMES, SPLIT_NAMES, latex_escape
from emogrid.study.cell_id import arm_label

QUESTIONS = {"reference": "vs reference", "best": "best vs row"}


def _side(rec: dict, side: str) -> str:
    """'model / arm' of side a or b."""
    model = rec["model"] if side == "a" else rec.get("model_b") or rec["model"]
    return f"{model} / {arm_label(rec[f'method_{side}'], rec[f'variant_{side}'] or '')}"


def render_comparisons(comparisons: pd.DataFrame, split: str = "test") -> dict[str, str]:
    """Per-subset paired comparisons of each metric's family (adjusted over it), then the
    descriptive pooled rows (no p-value: the pooled subsets share one test split)."""
    from emogrid.results.stats import format_p

    metrics = [f"{split}_accuracy", f"{split}_f1_macro"]
    sub = comparisons[comparisons["metric"].isin(metrics)] if len(comparisons) else comparisons
    per_subset = sub[sub["scope"] == "subset"] if len(sub) else sub
    pooled = sub[sub["scope"].isin(["study", "model"])] if len(sub) else sub
    heads = ["Question", "k", "n", "Metric", "A", "B", "Seeds", "Δ (A−B) pp", "95% interval", "Test", "p",
             "p (adjusted)"]
    body = []
    for rec in per_subset.to_dict("records"):
        low, high = rec.get("boot_low"), rec.get("boot_high")
        if low is None or pd.isna(low):
            low, high = rec.get("ci95_t_low"), rec.get("ci95_t_high")
        interval = DASH if low is None or pd.isna(low) else f"[{100 * low:+.2f}, {100 * high:+.2f}]"
        metric = METRIC_NAMES.get(str(rec["metric"]).partition("_")[2], rec["metric"])
        diff = DASH if pd.isna(rec.get("diff_mean")) else f"{100 * rec['diff_mean']:+.2f}"
        body.append([QUESTIONS.get(rec["question"], str(rec["question"])), str(int(rec["labels"])),
                     str(int(rec["samples"])),
                     metric, _side(rec, "a"), _side(rec, "b"), str(int(rec["n_pairs"])), diff, interval,
                     str(rec.get("test") or DASH), format_p(rec.get("p")),
                     format_p(rec.get("p_adj")) + (" *" if rec.get("significant") is True else "")])
    families = list(dict.fromkeys(str(f) for f in per_subset.get("family", pd.Series(dtype=str)).dropna() if f))
    one_seed = len(per_subset) and (per_subset["n_pairs"] == 1).any()
    note = (f"{SPLIT_NAMES.get(split, split)} split; paired on identical examples (same dataset, k, n, seed); "
            f"Δ > 0: A scores higher; B is the reference arm ('vs reference') or a row the column's best A is "
            f"tested against ('best vs row'). Families (one per metric; the study tables' marks use the same "
            f"adjusted p): " + ("; ".join(families) if families else "no comparisons")
            + "; * = significant after the correction (α = 0.05). p: exact, 3 significant digits."
            + (" One seed: the test compares these two trained runs (McNemar), not the methods."
               if one_seed else ""))
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
