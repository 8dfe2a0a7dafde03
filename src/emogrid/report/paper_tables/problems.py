"""``problems.md``: the failed, invalid and pending cells of a study, with their errors and hints."""

from __future__ import annotations

import math

import pandas as pd


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
