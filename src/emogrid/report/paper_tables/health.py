"""Training health in the study tables: an entry with a seed whose training diverged or never
trained (emogrid.training.health, the `train_health` column of cells.csv) is marked, apart from
the did-not-learn mark (which judges scores, not the run).
"""

from __future__ import annotations

import pandas as pd

HEALTH_MARK = "⊘"
UNHEALTHY = ("diverged", "did_not_train")
HEALTH_NOTE = (f"{HEALTH_MARK}: at least one seed diverged or did not train (its training loss became "
               "non-finite, ended above its start or never fell measurably below it; cells.csv train_health).")


def with_health_flags(summary: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """Every summary row gets `unhealthy_flag`: a seed of its group diverged or did not train."""
    if summary.empty or "train_health" not in cells:
        return summary.assign(unhealthy_flag=False)
    from emogrid.results.summary import group_columns

    keys = [k for k in group_columns(cells) if k in summary.columns]
    bad = cells[cells["train_health"].isin(UNHEALTHY)]
    if bad.empty:
        return summary.assign(unhealthy_flag=False)
    flags = bad[keys].drop_duplicates().assign(unhealthy_flag=True)
    out = summary.merge(flags, on=keys, how="left")
    out["unhealthy_flag"] = out["unhealthy_flag"].fillna(False).astype(bool)
    return out
