"""A perturbed copy of the default study (config.yaml: every value changed, still valid), a copy of
the workflow beside any config.yaml, and everything a study resolves to: for the tests that a
study named with --configfile never depends on config.yaml."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from tests.helpers import REPO

# String and list leaves: a valid value of their own (a number is shifted, a boolean flipped).
# A new string leaf in config.yaml needs its entry here: perturbed() refuses to skip it.
OTHER_VALUES = {
    "study.name": "perturbed-default",
    "study.description": "config.yaml with every value changed",
    "data.name": "goemotions-perturbed",
    "data.hub.id": "someone/go_emotions_copy",
    "data.hub.config": "raw",
    "data.taxonomy": "ekman",
    "data.mode": "multi",
    "data.test": "balanced",
    "grid.datasets": ["goemotions", "emotion"],
    "grid.labels": [2, 3],
    "grid.models": ["bert-base", "gpt2-xl"],
    "grid.methods": ["lora", "full", "qlora"],
    "methods.qlora.optim": "adamw",
    "train.batch_size": 6,  # +1 would not split over the 2 GPUs of the perturbed resources.train.gpu
    "train.scheduler": "linear",
    "data.val_from": "source",
    "data.draw": "natural",
    "data.transforms": ["lowercase"],
    "lora.head": "lora",
    "train.eval_every": "2 epochs",
    "train.metric": "f1_macro",
    "train.precision": "fp32",
    "train.optim": "adamw_8bit",
    "lora.targets": "all-linear",
    "quant.compute_dtype": "fp32",
    "report.metric": ["f1_macro"],
    "report.split": "val",
    "report.reference": None,  # another valid value: a reference file is checked when the study loads
}


def leaves(tree: dict, prefix: str = ""):
    """(dotted key, value) of every leaf; `study.stated` texts are leaves too."""
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from leaves(value, dotted + ".")
        else:
            yield dotted, value


def _other(dotted: str, value):
    if dotted.startswith(("study.stated.", "study.impossible.")):
        return f"perturbed: {value}"
    if dotted in OTHER_VALUES:
        return OTHER_VALUES[dotted]
    if dotted.startswith("models.") and dotted.endswith(".id"):
        return f"{value}-perturbed"  # another checkpoint
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return round(value + 0.01, 6) if value < 0.4 else value * 2
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [v + 1 for v in value]
    if value is None or value == {}:
        return value  # a null or an empty mapping is the schema's default: nothing to inherit
    raise AssertionError(f"config.yaml's {dotted} = {value!r}: add a valid other value to OTHER_VALUES")


def perturbed() -> dict:
    """config.yaml with every leaf but nulls and empty mappings changed to another valid value."""
    original = yaml.safe_load((REPO / "config.yaml").read_text())
    out = copy.deepcopy(original)
    for dotted, value in leaves(original):
        node = out
        parts = _split(original, dotted)
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = _other(dotted, value)
    return out


def _split(tree: dict, dotted: str) -> list[str]:
    """The keys of a dotted path whose names may hold dots (models.qwen2.5-1.5b)."""
    parts, node, rest = [], tree, dotted
    while rest:
        key = max((k for k in node if rest == k or rest.startswith(f"{k}.")), key=len)
        parts.append(key)
        rest = rest[len(key) + 1:]
        node = node[key] if isinstance(node[key], dict) else {}
    return parts


def workflow_copy(root: Path, default_study: dict | None) -> Path:
    """The workflow (Snakefile, rules, package) linked into `root`, with `default_study` as its
    config.yaml (none when None): Snakemake looks for the default study next to the Snakefile."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "src", "envs", "studies"):
        (root / name).symlink_to(REPO / name)
    if default_study is not None:
        (root / "config.yaml").write_text(yaml.safe_dump(default_study, sort_keys=False))
    return root


def resolved(config: dict) -> dict:
    """Every value a study resolves to: the config, each cell's spec and resources, the step
    resources and the dataset definitions."""
    from emogrid.scheduling.resources import step_resources, train_resources
    from emogrid.study.grid import dataset_definitions, expand_cells

    cells = expand_cells(config)
    return {"config": config, "cells": {c.cell_id: c.spec for c in cells},
            "train_resources": {c.cell_id: train_resources(config, c) for c in cells},
            "step_resources": {step: step_resources(config, step) for step in ("data", "report")},
            "datasets": {name: defn.as_json() for name, defn in dataset_definitions(config).items()}}
