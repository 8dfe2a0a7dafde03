"""``problems.md``: the failed, invalid and pending cells of a study, with their errors and hints, and
every position the study heatmap hatches (`hatched_positions`, the heatmap's own rule), with why."""

from __future__ import annotations

import math

import pandas as pd

from emogrid.study.cell_id import arm_label

POSITION = ["dataset", "model", "method", "variant", "labels", "samples"]
HATCHED_TITLE = "Hatched in the study heatmap (no finished seed)"


def hatched_positions(cells: pd.DataFrame) -> list[dict]:
    """The heatmap's positions without a finished seed: per method panel, each (dataset, model,
    variant) row of that method x every (k, n) column of the study, with why ("failed", "invalid",
    "pending", or "no cell": the study has no cell there, e.g. a k x n pair its arms never combine)."""
    every = cells.dropna(subset=["labels", "samples"]).copy()
    every["variant"] = every["variant"].fillna("").astype(str)
    every["labels"], every["samples"] = every["labels"].astype(int), every["samples"].astype(int)
    statuses = every.groupby(POSITION)["status"].agg(set).to_dict()
    frame = every[every["status"].isin(["ok", "failed", "pending"])]  # what the heatmap lays out
    if frame.empty:
        return []
    cols = [(k, n) for k in sorted(set(frame["labels"])) for n in sorted(set(frame["samples"]))]
    out = []
    for method in dict.fromkeys(frame["method"]):
        of_method = frame[frame["method"] == method]
        for ds, model, variant in dict.fromkeys(zip(of_method["dataset"], of_method["model"], of_method["variant"])):
            for k, n in cols:
                seen = statuses.get((ds, model, method, variant, k, n), set())
                if "ok" in seen:
                    continue
                why = next((w for w in ("failed", "invalid", "pending") if w in seen), "no cell")
                out.append({"dataset": ds, "model": model, "method": method, "variant": variant, "labels": k,
                            "samples": n, "why": why})
    return out


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
    hatched = hatched_positions(cells)
    lines += [f"## {HATCHED_TITLE}: {len(hatched)}", ""]
    for pos in hatched:
        lines.append(f"- {pos['dataset']}/{pos['model']} · {arm_label(pos['method'], pos['variant'], short=True)} · "
                     f"k={pos['labels']}, n={pos['samples']}: {pos['why']}")
    lines.append("")
    return "\n".join(lines)
