"""Apply a fine-tuning method (registry entry + spec sections) to a loaded model.

Pure functions of (model, spec, family); no side effects at import, so the planner can use
them on a meta-device model. peft is imported lazily (it costs seconds).
"""

from __future__ import annotations

import math

from emogrid.errors import CellError
from emogrid.models.loading import GENERIC, head_modules
from emogrid.study.spec_sections import MethodSpec, TrainRecipe

_LLAMA_ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
_LLAMA_MLP = ["gate_proj", "up_proj", "down_proj"]

_LLAMA_QV = ["q_proj", "v_proj"]

# family -> target set -> module-name suffixes (peft matches `name == t or name.endswith("." + t)`).
# `qv`: the query and value projections (the GoEmotions grid paper's choice: q_proj/v_proj,
# GPT-2's fused c_attn, BERT's query/value); `attention`: every attention projection;
# `all-linear`: attention + MLP.
TARGETS: dict[str, dict[str, list[str]]] = {
    "llama": {"qv": _LLAMA_QV, "attention": _LLAMA_ATTN, "all-linear": _LLAMA_ATTN + _LLAMA_MLP},
    "qwen2": {"qv": _LLAMA_QV, "attention": _LLAMA_ATTN, "all-linear": _LLAMA_ATTN + _LLAMA_MLP},
    "gemma3": {"qv": _LLAMA_QV, "attention": _LLAMA_ATTN, "all-linear": _LLAMA_ATTN + _LLAMA_MLP},
    "gpt2": {"qv": ["c_attn"], "attention": ["c_attn", "attn.c_proj"],
             "all-linear": ["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"]},
    "bert": {"qv": ["query", "value"], "attention": ["query", "key", "value", "attention.output.dense"],
             "all-linear": ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]},
    # Families added with datasets as an axis (module names from transformers' modeling files).
    "gemma": {"qv": _LLAMA_QV, "attention": _LLAMA_ATTN, "all-linear": _LLAMA_ATTN + _LLAMA_MLP},
    "gemma2": {"qv": _LLAMA_QV, "attention": _LLAMA_ATTN, "all-linear": _LLAMA_ATTN + _LLAMA_MLP},
    "distilbert": {"qv": ["q_lin", "v_lin"], "attention": ["q_lin", "k_lin", "v_lin", "out_lin"],
                   "all-linear": ["q_lin", "k_lin", "v_lin", "out_lin", "ffn.lin1", "ffn.lin2"]},
    # RoBERTa shares BERT's encoder names; its head differs (models.HEAD_MODULES).
    "roberta": {"qv": ["query", "value"], "attention": ["query", "key", "value", "attention.output.dense"],
                "all-linear": ["query", "key", "value", "attention.output.dense", "intermediate.dense",
                               "output.dense"]},
    "deberta-v2": {"qv": ["query_proj", "value_proj"],
                   "attention": ["query_proj", "key_proj", "value_proj", "attention.output.dense"],
                   "all-linear": ["query_proj", "key_proj", "value_proj", "attention.output.dense",
                                  "intermediate.dense", "output.dense"]},
    # ModernBERT fuses q, k and v into one Wqkv (like GPT-2's c_attn): qv adapts all three.
    "modernbert": {"qv": ["attn.Wqkv"], "attention": ["attn.Wqkv", "attn.Wo"],
                   "all-linear": ["attn.Wqkv", "attn.Wo", "mlp.Wi", "mlp.Wo"]},
}
TARGET_PRESETS = ("qv", "attention", "all-linear")

# IA3 scales the *input* of these feed-forward modules (peft's own convention per family).
IA3_FEEDFORWARD = {"llama": ["down_proj"], "qwen2": ["down_proj"], "gemma3": ["down_proj"],
                   "gpt2": ["mlp.c_proj"], "bert": ["output.dense"], "gemma": ["down_proj"],
                   "gemma2": ["down_proj"], "distilbert": ["ffn.lin2"], "roberta": ["output.dense"],
                   "deberta-v2": ["output.dense"], "modernbert": ["mlp.Wo"]}


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def resolve_targets(model, family: str, targets: str) -> list[str]:
    """Module-name suffixes for a preset (`qv`, `attention`, `all-linear`) or a comma-separated list.

    Every name must match at least one module of `model`, else CellError (a retry won't help).
    """
    if targets in TARGET_PRESETS:
        if family not in TARGETS or targets not in TARGETS[family]:
            from emogrid.models.loading import known_model_types

            what = (f"architecture {getattr(getattr(model, 'config', None), 'model_type', '?')!r} is not a "
                    f"known family" if family == GENERIC else f"model family {family!r} has no `{targets}` set")
            raise CellError(f"{what}, so the `{targets}` target preset is not defined for it; known "
                            f"model_types: {', '.join(known_model_types())}",
                            hint="name the modules to adapt explicitly, e.g. lora.targets: \"query,value\" "
                                 "(print(model) lists them)")
        names = list(TARGETS[family][targets])
    else:
        names = [t.strip() for t in str(targets).split(",") if t.strip()]
        if not names:
            raise CellError(f"empty target list {targets!r}", hint="use qv, attention, all-linear or module names")
    module_names = [n for n, _ in model.named_modules()]
    missing = [t for t in names if not any(_matches(n, t) for n in module_names)]
    if missing:
        raise CellError(f"target modules {missing} not found in this {family} model",
                        hint="check lora.targets / ia3.targets against the model's module names")
    return names


def _modules_to_save(spec: dict, family: str) -> list[str] | None:
    if not trains_head(spec):
        return None
    return list(head_modules(family))


def head_lora_modules(model, family: str) -> tuple[list[str], list[str]]:
    """(the head's Linear layers, its other parts with weights), named from the head module down
    (`score`; `pooler.dense`, `classifier`; `head.norm`): what `lora.head: lora` adapts and what
    else of the head still trains in full."""
    import torch.nn as nn

    linears, others = [], []
    for name, module in model.named_modules():
        parts = name.split(".")
        head = next((h for h in head_modules(family) if h in parts), None)
        if head is None:
            continue
        rel = ".".join(parts[parts.index(head):])
        if isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D":
            linears.append(rel)
        elif any(True for _ in module.parameters(recurse=False)):
            others.append(rel)
    return list(dict.fromkeys(linears)), list(dict.fromkeys(others))


def _lora_targets_and_head(spec: dict, model, family: str, section: dict) -> dict:
    """target_modules, modules_to_save and task_type of a LoRA-family config.

    `lora.head: full`: the head trains in full (modules_to_save). `lora.head: lora`: its Linear
    layers get LoRA as well and still train in full (their base layers in modules_to_save) --
    what peft's `all-linear` did on a classification model before peft excluded the head (peft
    issue 2027), and what the parameter counts of Patil et al. (LLaMA3, LoRA and QLoRA) include."""
    targets = resolve_targets(model, family, section["targets"])
    save = _modules_to_save(spec, family)
    if save and section["head"] == "lora":
        linears, others = head_lora_modules(model, family)
        # no task_type: peft would add the head names to modules_to_save, which keeps LoRA off it
        return {"target_modules": targets + linears, "task_type": None,
                "modules_to_save": [f"{n}.base_layer" for n in linears] + others}
    # SEQ_CLS makes peft add its own head names to modules_to_save; only wanted with the head on.
    from peft import TaskType

    return {"target_modules": targets, "task_type": TaskType.SEQ_CLS if save else None, "modules_to_save": save}


def trains_head(spec: dict) -> bool:
    """Whether the classification head trains in full. `train.train_head` is not a config key:
    absent from grid specs (the head always trains); the planner's sizing specs set it False."""
    return TrainRecipe.from_spec(spec).train_head


def default_total_step(spec: dict) -> int:
    """Optimizer steps of a cell, estimated from the spec (AdaLoRA needs it up front)."""
    train = TrainRecipe.from_spec(spec)
    n_train = int(spec["cell"]["samples"])
    per_step = max(1, train.batch_size * train.grad_accum)
    if train.max_steps is not None:  # train.max_steps replaces the epochs
        return train.max_steps
    return max(1, math.ceil(n_train / per_step) * train.epochs)


# method kinds that wrap no peft adapter: every weight, the head only, or nothing trains
NO_ADAPTER = ("full", "head", "none")


def build_peft_config(spec: dict, model, family: str, *, total_step: int | None = None):
    """The peft config for a cell (None for the kinds in NO_ADAPTER)."""
    method = MethodSpec.from_spec(spec)
    kind = method.peft
    if kind in NO_ADAPTER:
        return None
    from peft import AdaLoraConfig, IA3Config, LoraConfig, TaskType

    save = _modules_to_save(spec, family)
    # SEQ_CLS makes peft add its own head names to modules_to_save; only wanted with the head on.
    common = {"task_type": TaskType.SEQ_CLS if save else None, "modules_to_save": save}
    fan_in_fan_out = family == "gpt2"  # GPT-2 uses Conv1D (weights stored transposed)
    if kind == "lora":
        lora = spec["lora"]
        return LoraConfig(r=int(lora["r"]), lora_alpha=float(lora["alpha"]), lora_dropout=float(lora["dropout"]),
                          use_dora=method.use_dora, fan_in_fan_out=fan_in_fan_out,
                          **_lora_targets_and_head(spec, model, family, lora))
    if kind == "ia3":
        targets = resolve_targets(model, family, spec["ia3"]["targets"])
        feedforward = [t for t in IA3_FEEDFORWARD.get(family, []) if t in targets]
        return IA3Config(target_modules=targets, feedforward_modules=feedforward,
                         fan_in_fan_out=fan_in_fan_out, **common)
    if kind == "adalora":
        ada, lora = spec["adalora"], spec["lora"]
        total = int(total_step or default_total_step(spec))
        tinit, tfinal = int(ada["tinit"]), int(ada["tfinal"])
        if tinit + tfinal >= total:  # AdaLoRA refuses a schedule with no budgeting phase
            tinit, tfinal = 0, 0
        return AdaLoraConfig(init_r=int(ada["init_r"]), target_r=int(ada["target_r"]),
                             tinit=tinit, tfinal=tfinal, deltaT=int(ada["delta_t"]),
                             total_step=total, lora_alpha=float(lora["alpha"]), lora_dropout=float(lora["dropout"]),
                             fan_in_fan_out=fan_in_fan_out, **_lora_targets_and_head(spec, model, family, lora))
    raise CellError(f"method.peft {kind!r} is not one of full, lora, ia3, adalora, head, none")


def apply_method(model, spec: dict, family: str, *, total_step: int | None = None):
    """The model ready to train: every weight for `full`, the head alone for `head`, nothing for
    `none` (evaluated as loaded), else a PeftModel (QLoRA prepared for k-bit)."""
    method = MethodSpec.from_spec(spec)
    quantized = method.quantized
    if method.trains_every_weight:
        if quantized:
            raise CellError("full fine-tuning of a quantised model is not possible",
                            hint="use method quantize: none for full, or a LoRA-family method with nf4/int8")
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if method.peft in ("head", "none"):
        heads = set(head_modules(family))
        for name, p in model.named_parameters():
            p.requires_grad_(method.peft == "head" and bool(heads.intersection(name.split("."))))
        return model
    from peft import get_peft_model

    if quantized:
        from peft import prepare_model_for_kbit_training

        # Gradient checkpointing off: cells are short sequences, memory is rarely the limit.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = build_peft_config(spec, model, family, total_step=total_step)
    return get_peft_model(model, config)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total), counted exactly as peft's `get_nb_trainable_parameters`."""
    if hasattr(model, "get_nb_trainable_parameters"):
        return tuple(int(x) for x in model.get_nb_trainable_parameters())
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if n == 0 and hasattr(p, "ds_numel"):
            n = p.ds_numel
        if p.__class__.__name__ == "Params4bit":  # packed: two 4-bit values per byte
            n = n * 2 * (p.element_size() if hasattr(p, "element_size") else 1)
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total
