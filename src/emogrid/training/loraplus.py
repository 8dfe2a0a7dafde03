"""LoRA+ optimizer parameter groups: the B matrices learn `ratio` x faster, nothing else changes.

peft's `create_loraplus_optimizer` would (peft 0.21) set every group's weight decay to its own
`loraplus_weight_decay` (0.0 by default), silently dropping `train.weight_decay`, and give every
1-D trainable tensor (the head's bias, DoRA magnitudes, LayerNorms under modules_to_save) the
B learning rate. Here LoRA+ is LoRA with one difference, as in the LoRA+ paper: lr(B) = ratio x
lr(A). Weight decay follows the Trainer's own rule (no decay for biases and LayerNorm weights).
"""

from __future__ import annotations


def is_lora_b(name: str, param) -> bool:
    """A LoRA B matrix (linear `lora_B.<adapter>.weight` or embedding `lora_embedding_B`)."""
    return param.ndim >= 2 and (".lora_B." in name or ".lora_embedding_B." in name)


def param_groups(model, *, lr: float, ratio: float, weight_decay: float, decay_names) -> list[dict]:
    """Optimizer groups: (B or not) x (decay or not); empty groups left out."""
    decay_names = set(decay_names)
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        groups.setdefault((is_lora_b(name, param), name in decay_names), []).append(param)
    return [{"params": params, "lr": lr * ratio if b else lr, "weight_decay": weight_decay if decay else 0.0}
            for (b, decay), params in sorted(groups.items()) if params]


def create_optimizer(model, optimizer_cls, *, lr: float, ratio: float, weight_decay: float, decay_names,
                     **kwargs):
    return optimizer_cls(param_groups(model, lr=lr, ratio=ratio, weight_decay=weight_decay,
                                      decay_names=decay_names), lr=lr, **kwargs)
