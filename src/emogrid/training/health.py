"""Training health: did the optimizer actually train the model? Judged from the logged training
loss alone, so it is a fact about the run, not about the scores (that is the did-not-learn
check of emogrid.results.uncertainty, which compares test accuracy with the majority class):

* ``diverged``: the loss became non-finite (NaN, inf; such a cell stops and fails with
  NaNLossError, `failure_health`), or it ended above its starting value;
* ``did_not_train``: it never fell measurably below its starting value (MiniLM LoRA+ at 4
  labels, whose loss sat at ln 4 = 1.386 from its first to its 132nd step: its 38.8 % test
  accuracy, above the 33.8 % majority class, passed every score-based check; issue 22);
* ``ok``: it fell measurably and ended below where it started;
* ``unchecked``: fewer than two logged losses, nothing to compare.

The starting value is the first logged loss (the Trainer logs step 1, `logging_first_step`).
"Measurably" is a relative drop of MEASURABLE_DROP (2 %): the LoRA+ run stayed at 1.386, and
tiny-model runs that stayed at chance moved by 0.4-1 %, while the slowest run that did learn
(a tiny BERT at lr 1e-3 reaching 100 % validation accuracy) fell by 4.3 % (measured on the
tests' toy data); a model that learns well halves its loss within an epoch. A diverged or
untrained cell loses any tuning comparison (emogrid.results.tune_select).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

MEASURABLE_DROP = 0.02  # the lowest later loss must be this share below the first
STATES = ("ok", "diverged", "did_not_train", "unchecked")
HEALTHY = ("ok", "unchecked")


def training_health(log_rows: list[dict]) -> dict:
    """{"state", "reason", "first_loss", "last_loss", "min_loss", "losses"} from train_log rows
    (emogrid.training.write.train_log, or the Trainer's log_history: both carry `loss`)."""
    losses = [(row.get("step"), row["loss"]) for row in log_rows if "loss" in row and row["loss"] is not None]
    out: dict = {"losses": len(losses)}
    bad = [(step, loss) for step, loss in losses if not _finite(loss)]
    if bad:
        step, loss = bad[0]
        return {**out, "state": "diverged", "reason": f"training loss became {loss} at step {step}"}
    if len(losses) < 2:
        return {**out, "state": "unchecked", "reason": "fewer than two logged training losses"}
    first, last = float(losses[0][1]), float(losses[-1][1])
    lowest = min(float(loss) for _, loss in losses[1:])
    out.update(first_loss=round(first, 6), last_loss=round(last, 6), min_loss=round(lowest, 6))
    fell = lowest < first * (1 - MEASURABLE_DROP)
    if last > first and (fell or last > first * (1 + MEASURABLE_DROP)):
        return {**out, "state": "diverged",
                "reason": f"training loss ended at {last:.4g}, above its starting {first:.4g}"}
    if not fell:
        return {**out, "state": "did_not_train",
                "reason": f"training loss never fell {100 * MEASURABLE_DROP:.0f}% below its starting "
                          f"{first:.4g} (lowest {lowest:.4g}, last {last:.4g})"}
    return {**out, "state": "ok", "reason": f"training loss fell from {first:.4g} to {last:.4g}"}


def logged_health(run_dir: str | os.PathLike) -> dict:
    """`training_health` of a run's train_log.jsonl, for a metrics.json written before emogrid
    recorded health; lines that are not JSON objects are skipped, a missing log reads as empty."""
    try:
        lines = (Path(run_dir) / "train_log.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return training_health(rows)


def failure_health(error: dict | None) -> dict | None:
    """The health of a failed cell: a non-finite loss stops training (NaNLossError,
    emogrid.training.callbacks) and leaves failure.json; that cell diverged. None otherwise."""
    if isinstance(error, dict) and error.get("type") == "NaNLossError":
        return {"state": "diverged", "reason": str(error.get("message") or "training loss became non-finite")}
    return None


def healthy(state: str | None) -> bool:
    """Whether a health state counts as trained (unknown = an older result without a record)."""
    return state in HEALTHY or state is None


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
