"""emogrid.planning.report: the LoRA sizing table equals peft's own counts."""

from __future__ import annotations

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


