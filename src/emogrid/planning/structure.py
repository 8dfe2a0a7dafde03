"""A cell's model structure on the meta device: exact parameter counts and per-tensor facts.

The cell's model is built from its config on the meta device (no weights, no memory), the
cell's method is applied with the trainer's own code (`emogrid.models.adapters.apply_method`, the
real peft config), and parameters are counted the way peft counts them. The configs of the
default models ship in `emogrid/model_configs/` so this works without network; any other
model is planned from its local directory (`models.<name>.path`) or its hub config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emogrid.errors import CellError
from emogrid.study.model_registry import builtin_for, bundled_configs
from emogrid.study.spec_sections import MethodSpec

# Bundled architecture configs: file stem -> hub ids they stand for (emogrid.study.model_registry).
BUNDLED_CONFIGS: dict[str, tuple[str, ...]] = bundled_configs()

# (config source, structure key, dtype) -> measured structure; config source -> bare meta model
_count_cache: dict[tuple, dict] = {}
_bare_models: dict[str, tuple] = {}


# ----------------------------------------------------------------------------- model configs

def bundled_config_name(model_spec: dict) -> str | None:
    """The bundled config file (stem) for a model block (a built-in, by hub id); None if not bundled."""
    entry = builtin_for(model_spec)
    return entry.config if entry else None


def model_config_dict(model_spec: dict) -> tuple[dict, str]:
    """(config.json contents, where from): local path > bundled > hub (may need network)."""
    path = model_spec.get("path")
    if path:
        cfg = Path(path).expanduser() / "config.json"
        if not cfg.is_file():
            raise CellError(f"model path {str(path)!r} has no config.json")
        return json.loads(cfg.read_text(encoding="utf-8")), str(cfg)
    stem = bundled_config_name(model_spec)
    if stem:
        from emogrid.package_data import bundled_model_config

        return bundled_model_config(stem), f"bundled:{stem}"
    if not model_spec.get("id"):
        raise CellError(f"model {model_spec.get('name')!r} has neither path nor id")
    from emogrid.models.loading import load_model_config

    return load_model_config(model_spec).to_dict(), f"hub:{model_spec['id']}"


def config_family(cfg_dict: dict) -> str:
    """The model family (emogrid.models.loading) of a config.json."""
    from emogrid.models.loading import detect_family

    return detect_family(cfg_dict["model_type"])


def checkpoint_dtype(cfg_dict: dict) -> str:
    name = str(cfg_dict.get("dtype") or cfg_dict.get("torch_dtype") or "float32")
    return {"bfloat16": "bf16", "float16": "fp16"}.get(name, "fp32")


# ----------------------------------------------------------------------------- meta models

def _hf_config(cfg_dict: dict, num_labels: int):
    from transformers import AutoConfig

    d = dict(cfg_dict)
    model_type = d.pop("model_type")
    cfg = AutoConfig.for_model(model_type, **d)
    if model_type == "gemma3" and hasattr(cfg, "get_text_config"):
        cfg = cfg.get_text_config()
    cfg.num_labels = num_labels
    if getattr(cfg, "pad_token_id", None) is None:
        eos = getattr(cfg, "eos_token_id", None)
        cfg.pad_token_id = eos[0] if isinstance(eos, list) else (eos if eos is not None else 0)
    return cfg


def build_meta_model(cfg_dict: dict, num_labels: int, dtype: str = "fp32"):
    """A sequence-classification model with meta tensors: structure and shapes, no memory."""
    import torch

    from emogrid.models.loading import _model_class

    family = config_family(cfg_dict)
    cfg = _hf_config(cfg_dict, num_labels)
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    cls = _model_class(cfg, family)
    with torch.device("meta"):
        if hasattr(cls, "from_config"):
            model = cls.from_config(cfg, dtype=torch_dtype)
        else:
            model = cls._from_config(cfg, dtype=torch_dtype)
    return model, family


# ----------------------------------------------------------------------------- structure key

def _unquantized(spec: dict) -> dict:
    # Quantisation is accounted for analytically (bnb cannot quantise meta tensors), so the
    # structure is built unquantised: same adapters, same trainable parameters.
    return {**spec, "method": {**spec["method"], "quantize": "none"}}


def _jsonable(value: Any):
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


# peft config fields that neither shape a parameter nor change what autograd saves: a scale
# factor and AdaLoRA's budget schedule. Left out of the key so sweeping them reuses one count.
# (A field missing here only costs a recount; one listed wrongly would share counts.)
_NOT_STRUCTURAL = ("lora_alpha", "tinit", "tfinal", "deltaT", "total_step")


def structure_key(cfg_dict: dict, cfg_key: str, spec: dict, dtype: str) -> tuple:
    """Cache key of a cell's structure: the model config's source, the dtype, and the method as
    the trainer applies it -- `full`, or the peft config `emogrid.models.adapters.build_peft_config`
    builds for this model, serialised. Whatever a method (or a new one) reads from the spec to
    shape its adapters is in that config, so no per-method list can fall out of date. The head
    width is not part of it (counts are adjusted for it)."""
    from emogrid.models.adapters import NO_ADAPTER, build_peft_config

    peft = MethodSpec.from_spec(spec).peft
    if peft in NO_ADAPTER:
        return (cfg_key, peft, dtype)

    if cfg_key not in _bare_models:  # target names only: one meta model per config serves all keys
        _bare_models[cfg_key] = build_meta_model(cfg_dict, 2)
    model, family = _bare_models[cfg_key]
    fields = build_peft_config(_unquantized(spec), model, family, total_step=1000).to_dict()
    for name in _NOT_STRUCTURAL:
        fields.pop(name, None)
    return (cfg_key, json.dumps(fields, sort_keys=True, default=_jsonable), dtype)


# ----------------------------------------------------------------------------- counting

def _dtype_name(t) -> str:
    return {"torch.bfloat16": "bf16", "torch.float16": "fp16"}.get(str(t.dtype), "fp32")


def _measure_structure(cfg_dict: dict, spec: dict, num_labels: int, dtype: str) -> dict:
    import torch.nn as nn

    from emogrid.models.adapters import apply_method, count_parameters
    from emogrid.models.loading import head_modules

    model, family = build_meta_model(cfg_dict, num_labels, dtype)
    heads = tuple(head_modules(family))
    # Quantisable modules (bnb replaces nn.Linear and GPT-2's Conv1D, never the head).
    quant_linears = []
    for name, mod in model.named_modules():
        if any(name == h or name.startswith(h + ".") or ("." + h + ".") in ("." + name + ".") for h in heads):
            continue
        if isinstance(mod, nn.Linear) or type(mod).__name__ == "Conv1D":
            w = mod.weight
            out_rows = w.shape[0] if isinstance(mod, nn.Linear) else w.shape[1]
            quant_linears.append((name, w.numel(), out_rows))
    peft_model = apply_method(model, _unquantized(spec), family, total_step=1000)
    # peft quirk on meta: moving AdaLoRA's `ranknum` (a frozen constant) to a meta base layer's
    # device re-creates it with requires_grad=True; on real weights it stays frozen.
    for pname, p in peft_model.named_parameters():
        if ".ranknum." in pname:
            p.requires_grad_(False)
    trainable, total = count_parameters(peft_model)

    def is_head(pname: str) -> bool:
        parts = pname.split(".")
        return any(h in parts for h in heads)

    tensors, frozen_by_dtype = [], {}
    head_total = head_train = 0
    head_frozen = None
    for pname, p in peft_model.named_parameters():
        h = is_head(pname) and p.dim() >= 1 and p.shape[0] == num_labels
        if h:
            head_total += p.numel() // num_labels
            if p.requires_grad:
                head_train += p.numel() // num_labels
            else:
                head_frozen = (_dtype_name(p), (head_frozen[1] if head_frozen else 0) + p.numel() // num_labels)
        if p.requires_grad:
            tensors.append((pname, p.numel(), _dtype_name(p), h))
        else:
            frozen_by_dtype[_dtype_name(p)] = frozen_by_dtype.get(_dtype_name(p), 0) + p.numel()
    quant_numel = sum(n for _, n, _ in quant_linears)
    frozen_total = sum(frozen_by_dtype.values())
    return {
        "family": family, "num_labels": num_labels, "trainable": int(trainable), "total": int(total),
        "trainable_tensors": tensors, "frozen_by_dtype": frozen_by_dtype,
        "quant_numel": quant_numel, "quant_rows": sum(r for _, _, r in quant_linears),
        "quant_sizes": [n for _, n, _ in quant_linears],
        "unquantized_frozen": max(0, frozen_total - quant_numel),
        "head_total_per_label": head_total, "head_trainable_per_label": head_train,
        "head_frozen_per_label_dtype": head_frozen, "_model": peft_model,
    }


def meta_structure(cfg_dict: dict, cfg_key: str, spec: dict, num_labels: int, dtype: str) -> dict:
    """The cached structure of (model, method, dtype), as measured at whichever label count came
    first (its `num_labels`); `_model` is the peft-wrapped meta model."""
    key = structure_key(cfg_dict, cfg_key, spec, dtype)
    if key not in _count_cache:
        _count_cache[key] = _measure_structure(cfg_dict, spec, num_labels, dtype)
    return _count_cache[key]


def structure(cfg_dict: dict, cfg_key: str, spec: dict, num_labels: int, dtype: str) -> dict:
    """Counts and per-tensor facts of (model, method) at `num_labels`; cached, head-adjusted."""
    base = meta_structure(cfg_dict, cfg_key, spec, num_labels, dtype)
    if base["num_labels"] == num_labels:
        return base
    # Head width differs: every tensor whose leading dim is the label count scales with k.
    dk = num_labels - base["num_labels"]
    out = dict(base, num_labels=num_labels)
    out["total"] = base["total"] + dk * base["head_total_per_label"]
    out["trainable"] = base["trainable"] + dk * base["head_trainable_per_label"]
    out["trainable_tensors"] = [(n, (num_labels * numel // base["num_labels"]) if is_head else numel, dt, is_head)
                                for n, numel, dt, is_head in base["trainable_tensors"]]
    out["frozen_by_dtype"] = dict(base["frozen_by_dtype"])
    hd = base["head_frozen_per_label_dtype"]
    if hd:
        out["frozen_by_dtype"][hd[0]] = out["frozen_by_dtype"].get(hd[0], 0) + dk * hd[1]
    out["unquantized_frozen"] = base["unquantized_frozen"] + dk * (hd[1] if hd else 0)
    return out


def count_cell(spec: dict, num_labels: int | None = None) -> dict:
    """{'trainable', 'total', 'trainable_percent', 'family'} for a cell spec (meta device, exact)."""
    k = int(num_labels or spec["cell"]["labels"])
    cfg_dict, src = model_config_dict(spec["model"])
    st = structure(cfg_dict, src, spec, k, "fp32")
    return {"family": st["family"], "trainable": st["trainable"], "total": st["total"],
            "trainable_percent": 100.0 * st["trainable"] / st["total"], "config_source": src}
