"""Typed, read-only views of a cell spec's sections, built once from the spec dict.

The spec (`spec.json`, docs/CONTRACTS.md) stays the plain JSON the grid writes and hashes;
code that reads a section across modules reads it through a view here instead of
`spec["train"]["lr"]`, so a key's type and its default are decided in one place. A key the
spec leaves out (a hand-made spec of a test or the planner) takes the schema's default; keys
a view does not know are left to the dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cache
from typing import Any

from emogrid.study.schema import section_defaults


@cache
def _train_defaults() -> dict:
    return section_defaults("train")


@dataclass(frozen=True)
class TrainRecipe:
    """The `train` section of a cell spec (config.schema.yaml documents each key)."""

    batch_size: int
    grad_accum: int
    eval_batch_size: int
    lr: float
    scheduler: str
    warmup_ratio: float
    epochs: int
    max_steps: int | None  # set, it replaces the epochs
    restore_best: bool  # the best evaluation's weights restored at the end
    patience: int
    eval_every: str | int  # 'epoch', '0.25 epoch', '50 steps' or a number of optimizer steps
    metric: str
    weight_decay: float
    max_grad_norm: float
    precision: str  # auto | fp32 | fp16 | bf16
    optim: str  # the method's own optimizer where it has one (the grid folds it in)
    max_length: int
    length_grouping: bool
    save_adapter: bool
    report_to: str
    train_head: bool = True  # not a config key: the planner's what-if specs freeze the head

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> TrainRecipe:
        train = {**_train_defaults(), **(spec.get("train") or {})}
        kinds = {"int": int, "float": float, "bool": bool, "str": str}
        values = {}
        for f in fields(cls):
            if f.name not in train:
                continue  # train_head: its class default
            value = train[f.name]
            convert = kinds.get(str(f.type))
            values[f.name] = convert(value) if convert is not None else value
        if values["max_steps"] is not None:
            values["max_steps"] = int(values["max_steps"])
        return cls(**values)

    @property
    def batch(self) -> dict[str, int]:
        """The batch settings a run adapts after running out of memory (emogrid.training.failures)."""
        return {"batch_size": self.batch_size, "grad_accum": self.grad_accum, "eval_batch_size": self.eval_batch_size}


@dataclass(frozen=True)
class MethodSpec:
    """The `method` block of a cell spec: what kind of training a cell does (emogrid.study.methods
    writes it; emogrid.study.grid.SPEC_KEYS lists its keys)."""

    name: str  # the method's name in the grid (lora, qlora, dora, ...)
    peft: str  # full | lora | ia3 | adalora | head | none
    quantize: str  # none | nf4 | int8
    use_dora: bool
    loraplus_ratio: float | None  # LoRA+: B's learning rate over A's; None for other methods

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> MethodSpec:
        method = spec["method"]
        ratio = method.get("loraplus_ratio")
        # a hand-made spec (a test's, the planner's what-if) may name only the peft kind
        return cls(name=str(method.get("name", method["peft"])), peft=str(method["peft"]),
                   quantize=str(method.get("quantize", "none")), use_dora=bool(method.get("use_dora", False)),
                   loraplus_ratio=None if ratio is None else float(ratio))

    @property
    def trains_every_weight(self) -> bool:
        return self.peft == "full"

    @property
    def quantized(self) -> bool:
        return self.quantize != "none"
