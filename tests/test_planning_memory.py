"""emogrid.planning.memory: the memory breakdown, QLoRA weight bytes equal to bitsandbytes',
the pre-flight fit check, and spreading a full fine-tuning cell over several GPUs."""

from __future__ import annotations

import json

import pytest

from emogrid.planning.memory import check_fit, gpus_for, plan_cell_memory, sharded_peak_mb
from tests.plan_specs import K, make_spec


def test_memory_breakdown_is_consistent():
    model = {"name": "llama-3.2-1b", "id": None, "path": None}
    spec = make_spec(model, "lora", k=4, r=16)
    spec["train"]["precision"] = "auto"
    lora = plan_cell_memory(spec)
    q = dict(spec, method={**spec["method"], "quantize": "nf4"}, train={**spec["train"], "optim": "adamw_8bit"})
    qlora = plan_cell_memory(q)
    full = plan_cell_memory(make_spec(model, "full", k=4) | {"train": {**spec["train"]}})
    assert qlora["trainable_params"] == lora["trainable_params"]
    assert qlora["weights_mb"] < min(lora["weights_mb"], full["weights_mb"])
    assert qlora["optimizer_mb"] < lora["optimizer_mb"] < full["optimizer_mb"]
    assert full["train_peak_mb"] > lora["train_peak_mb"]
    # Adam 32-bit: two fp32 states per trainable parameter (adapters are fp32)
    assert lora["optimizer_mb"] == pytest.approx(2 * lora["trainable_mb"], rel=1e-3)


def test_check_fit_reports_cells_that_do_not_fit():
    model = {"name": "gpt2-xl", "id": None, "path": None}
    spec = make_spec(model, "full", k=4)
    spec["train"]["precision"] = "auto"
    assert check_fit([spec], gpu_mem_mb=8000)[0]["cell_id"] == "x/full"
    est = plan_cell_memory(spec)["train_peak_mb"]
    assert check_fit([spec], gpu_mem_mb=est * 1.1, margin=1.2) != []
    assert check_fit([spec], gpu_mem_mb=est * 1.3, margin=1.2) == []
    assert check_fit([spec], gpu_mem_mb=200_000) == []



@pytest.mark.parametrize("double_quant", [True, False])
def test_nf4_weight_bytes_equal_bitsandbytes(tiny_models, double_quant):
    """QLoRA weights: packed 4-bit + absmax (nested or not) + fp32 rest == the real bnb model."""
    from emogrid.adapters import apply_method
    from emogrid.models import load_model

    spec = make_spec({"name": "tiny-llama", "id": None, "path": str(tiny_models["llama"])}, "qlora")
    spec["quant"]["double_quant"] = double_quant
    model, _tok, family = load_model(spec, K)
    model = apply_method(model, spec, family)
    import bitsandbytes as bnb

    real = sum(p.numel() * p.element_size() for p in model.parameters())
    for mod in model.modules():
        qs = mod.weight.quant_state if isinstance(mod, bnb.nn.Linear4bit) else None  # not peft's wrappers
        if qs is not None:
            real += qs.absmax.numel() * qs.absmax.element_size()
            if qs.state2 is not None:
                real += qs.state2.absmax.numel() * qs.state2.absmax.element_size()
    assert plan_cell_memory(spec, device="cpu")["weights_bytes"] == real



def test_planner_spreads_a_full_finetuning_cell_that_fits_no_single_gpu():
    model = {"name": "llama-3.2-1b", "id": None, "path": None}
    full = make_spec(model, "full", k=4)
    full["train"].update(precision="auto", batch_size=8)
    est = plan_cell_memory(full)
    two = sharded_peak_mb(est, 2, 16)
    four = sharded_peak_mb(est, 4, 16)
    assert four < two < est["train_peak_mb"]
    assert gpus_for(full, est["train_peak_mb"] * 1.3, margin=1.2) == 1
    assert gpus_for(full, two * 1.25, margin=1.2) == 2
    assert gpus_for(full, four * 1.25, margin=1.2) == 4
    assert gpus_for(full, four * 1.25, margin=1.2, max_gpus=2) is None
    assert gpus_for(full, 100.0, margin=1.2) is None
    odd = json.loads(json.dumps(full))
    odd["train"]["batch_size"] = 6  # 4 does not divide it: 8 would be next, and 8 does not either
    assert gpus_for(odd, four * 1.25, margin=1.2) is None
    # adapters under DDP keep their whole footprint on each GPU: no spreading
    lora = make_spec(model, "lora", k=4)
    lora["train"].update(precision="auto", batch_size=8)
    small = plan_cell_memory(lora)["train_peak_mb"]
    assert gpus_for(lora, small * 0.9, margin=1.0) is None
    # the pre-flight check accepts what fits over several GPUs only when allowed to
    assert check_fit([full], gpu_mem_mb=two * 1.25, margin=1.2) != []
    assert check_fit([full], gpu_mem_mb=two * 1.25, margin=1.2, max_gpus=2) == []


def test_lora_dropout_is_in_the_activations_not_shared_from_the_cache():
    """Dropout > 0 saves its masks for backward: a cell with dropout plans more activation
    memory than the same cell without, even when the dropout-free one was planned (and cached)
    first in this process."""
    from emogrid.planning import memory, structure

    structure._count_cache.clear()
    memory._act_cache.clear()
    model = {"name": "bert-base-uncased", "id": None, "path": None}
    plain = make_spec(model, "lora", k=4, r=16)
    plain["lora"]["dropout"] = 0.0
    dropped = make_spec(model, "lora", k=4, r=16)
    dropped["lora"]["dropout"] = 0.1
    without = plan_cell_memory(plain, device="cpu")
    with_dropout = plan_cell_memory(dropped, device="cpu")
    assert with_dropout["trainable_params"] == without["trainable_params"]
    assert with_dropout["activations_mb"] > without["activations_mb"]
