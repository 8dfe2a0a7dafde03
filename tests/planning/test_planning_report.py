"""emogrid.planning.report: the LoRA sizing table equals peft's own counts."""

from __future__ import annotations

import pytest

from emogrid.planning.report import LORA_SIZING_RANKS, LORA_SIZING_TARGETS, lora_sizing_rows, lora_sizing_spec
from emogrid.planning.structure import count_cell


def test_lora_sizing_equals_peft(tiny_models):
    for family, path in tiny_models.items():
        mspec = {"id": None, "path": str(path)}
        rows = lora_sizing_rows({f"tiny-{family}": mspec})
        assert len(rows) == len(LORA_SIZING_RANKS) * len(LORA_SIZING_TARGETS)
        for row in rows:
            if row["r"] in (8, 64):
                spec = lora_sizing_spec(f"tiny-{family}", mspec, row["r"], row["targets"])
                c = count_cell(spec)
                assert (row["lora_params"], row["total_params"]) == (c["trainable"], c["total"]), (family, row)




def test_checkpoint_disk_per_running_cell(tiny_models):
    """`emogrid plan` states the checkpoint policy and the disk a running cell's checkpoints take:
    full fine-tuning saves every weight with its AdamW state (2 fp32 copies) in the one resumable
    checkpoint, plus the best evaluation's weights only; an adapter cell saves the adapter and the
    head. At a save the new resumable checkpoint is complete before the old one goes."""
    from plan_specs import make_spec

    from emogrid.planning.checkpoints import checkpoint_disk
    from emogrid.planning.memory import plan_cell_memory
    from emogrid.planning.report import PLAN_MD_COLUMNS, plan_markdown

    model = {"name": "tiny", "path": str(tiny_models["llama"])}
    full, lora = make_spec(model, "full"), make_spec(model, "lora")
    est_full, est_lora = plan_cell_memory(full, device="cpu"), plan_cell_memory(lora, device="cpu")
    disk_full, disk_lora = checkpoint_disk(full, est_full), checkpoint_disk(lora, est_lora)
    weights = est_full["weights_mb"]
    assert est_full["optimizer_mb"] == pytest.approx(2 * weights, rel=1e-3)  # AdamW: 2 fp32 states
    assert disk_full["checkpoint_disk_mb"] == pytest.approx(2 * (weights + 2 * weights) + weights, rel=1e-3)
    assert disk_lora["checkpoint_weights_mb"] == pytest.approx(est_lora["trainable_mb"], abs=0.1)
    assert disk_lora["checkpoint_disk_mb"] < disk_full["checkpoint_disk_mb"] / 10
    assert "checkpoint_disk_mb" in PLAN_MD_COLUMNS
    rows = [{"model": "tiny", "method": m, "variant": "", **d} for m, d in (("full", disk_full), ("lora", disk_lora))]
    md = plan_markdown(rows, with_fits=False)
    assert "the latest resumable checkpoint (weights + optimizer state) and the best evaluation's weights only" in md
    assert "Largest: tiny/full" in md
