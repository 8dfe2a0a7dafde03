"""Cell specs the planner tests share: one per method kind, on any model block."""

from __future__ import annotations

K = 3

METHODS = {
    "full": {"peft": "full"},
    "lora": {"peft": "lora"},
    "lora-all-linear": {"peft": "lora", "targets": "all-linear"},
    "dora": {"peft": "lora", "use_dora": True},
    "ia3": {"peft": "ia3"},
    "adalora": {"peft": "adalora"},
    "lora-nohead": {"peft": "lora", "train_head": False},
    "qlora": {"peft": "lora", "quantize": "nf4"},
    "lora-head": {"peft": "lora", "targets": "all-linear", "head": "lora"},
    "dora-head": {"peft": "lora", "use_dora": True, "head": "lora"},
    "adalora-head": {"peft": "adalora", "head": "lora"},
    "head": {"peft": "head"},
    "untrained": {"peft": "none"},
}


def make_spec(model: dict, method: str, k: int = K, r: int = 4) -> dict:
    m = dict(METHODS.get(method, {"peft": method}))
    targets = m.pop("targets", "attention")
    train_head = m.pop("train_head", True)
    head = m.pop("head", "full")
    return {"cell": {"labels": k, "samples": 60}, "cell_id": f"x/{method}",
            "model": model,
            "method": {"name": method, "use_dora": False, "loraplus_ratio": None, "quantize": "none", **m},
            "lora": {"r": r, "alpha": 2 * r, "dropout": 0.0, "targets": targets, "head": head},
            "ia3": {"targets": targets},
            "adalora": {"init_r": 6, "target_r": 4, "tinit": 0, "tfinal": 0, "delta_t": 1},
            "quant": {"double_quant": True, "compute_dtype": "float32"},
            "train": {"batch_size": 4, "grad_accum": 1, "epochs": 1, "precision": "fp32", "optim": "adamw",
                      "eval_batch_size": 8, "max_length": 32, "train_head": train_head},
            "data": {"mode": "single"}}


def peft_count_on_real_weights(spec: dict) -> tuple[int, int]:
    from emogrid.models.adapters import apply_method, count_parameters
    from emogrid.models.loading import load_model

    model, _tok, family = load_model(spec, spec["cell"]["labels"])
    model = apply_method(model, spec, family, total_step=1000)
    return count_parameters(model)

