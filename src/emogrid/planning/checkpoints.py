"""The disk a running cell's checkpoints take (emogrid.training.checkpoint_policy keeps them in
results/runs/<cell>/.checkpoint and deletes them when the cell finishes):

* the latest resumable checkpoint: the saved weights (every parameter for full fine-tuning; the
  adapter and the head otherwise) and the optimizer state (emogrid.planning.memory's optimizer_mb);
* the best evaluation's weights only (hard links while the best is the latest checkpoint);
* while a checkpoint is saved, the new one is complete before the old one is deleted.

So `checkpoint_disk_mb` = 2 x resumable + best weights, the most a running cell holds.
"""

from __future__ import annotations

from emogrid.study.spec_sections import MethodSpec

POLICY = ("Checkpoints, while a cell trains (results/runs/<cell>/.checkpoint, deleted when it finishes): "
          "the latest resumable checkpoint (weights + optimizer state) and the best evaluation's weights "
          "only (no optimizer state). checkpoint_disk_mb = 2 x resumable + best weights: the most one "
          "running cell holds, while a new checkpoint is written before the old one is deleted.")


def checkpoint_disk(spec: dict, est: dict) -> dict:
    """{checkpoint_weights_mb, checkpoint_resumable_mb, checkpoint_disk_mb} of a cell from its
    memory estimate (emogrid.planning.memory.plan_cell_memory)."""
    full = MethodSpec.from_spec(spec).peft == "full"
    weights = float(est["weights_mb"] if full else est["trainable_mb"])
    resumable = weights + float(est["optimizer_mb"])
    return {"checkpoint_weights_mb": round(weights, 1), "checkpoint_resumable_mb": round(resumable, 1),
            "checkpoint_disk_mb": round(2 * resumable + weights, 1)}


def policy_markdown(rows: list[dict]) -> str:
    """The policy, and the largest per-cell disk among the plan's rows."""
    if not rows:
        return POLICY + "\n"
    top = max(rows, key=lambda r: r["checkpoint_disk_mb"])
    name = f"{top['model']}/{top['method']}" + (f"/{top['variant']}" if top.get("variant") else "")
    between = top["checkpoint_resumable_mb"] + top["checkpoint_weights_mb"]
    return (POLICY + f" Largest: {name}, {top['checkpoint_disk_mb'] / 1024:,.1f} GiB per running cell while "
            f"it saves, {between / 1024:,.1f} GiB between saves (resumable "
            f"{top['checkpoint_resumable_mb'] / 1024:,.1f} GiB + best weights "
            f"{top['checkpoint_weights_mb'] / 1024:,.1f} GiB).\n")
