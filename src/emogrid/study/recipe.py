"""A study's recipe: each value its cells train with, where it was set, and whether the paper states it.

Rows, in this order: the grid's axes; each grid model's hub id (or local path); the subset
settings of `data:`; every leaf of the config sections the grid's methods read (train, lora,
ia3, adalora, loraplus, quant: emogrid.study.methods); then any other key `study.stated`
names. A value that only some cells use has a row of its own, scoped to them: a
`models.<m>.<section>` or `methods.<m>.<section>` override, a method's own optimizer (QLoRA:
8-bit AdamW), a dataset's own subset setting.

`source` (for `emogrid grid --explain`) is the layer that set the value: a study file, `--config`,
`--config-json`, the schema default, the model registry, a built-in method or dataset; `stated`
is the paper's evidence from `study.stated` (emogrid.study.stated), empty where the value is ours;
`impossible` is why the paper's value cannot run (`study.impossible`). `category` sorts each value
into exactly one of impossible, stated, ours (in that order of precedence).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emogrid.study.cell_id import format_value
from emogrid.study.datasets import grid_datasets, resolve_dataset
from emogrid.study.grid import resolve_method
from emogrid.study.model_registry import BUILTIN_MODELS
from emogrid.study.schema import SWEEPABLE_SECTIONS, section_defaults
from emogrid.study.stated import impossible, lookup, stated

GRID_KEYS = ("datasets", "labels", "samples", "models", "methods", "seeds")
DATA_KEYS = ("mode", "val_fraction", "val_from", "draw", "transforms", "test", "threshold")  # threshold: last
CATEGORIES = ("stated", "ours", "impossible")
NOT_RECIPE = {"train.report_to", "train.save_adapter"}  # global settings and outputs, not how a cell trains
SCHEMA_DEFAULT = "schema default"


@dataclass(frozen=True)
class RecipeRow:
    key: str         # what the value is (train.lr)
    value: Any
    scope: str       # "" = every cell; else the cells it applies to (methods.full, models.bert-base, ...)
    config_key: str  # where it lives in the config (methods.full.train.lr); study.stated names these
    source: str      # the layer that set it (empty without layers)
    stated: str      # the paper's evidence, "" = ours
    impossible: str = ""  # why the paper's value cannot run here (study.impossible), "" = it can

    @property
    def text(self) -> str:
        return show(self.value)

    @property
    def category(self) -> str:
        return "impossible" if self.impossible else "stated" if self.stated else "ours"


def category_counts(rows: list[RecipeRow]) -> dict[str, int]:
    """{stated, ours, impossible} -> how many recipe values fall in each."""
    return {c: sum(r.category == c for r in rows) for c in CATEGORIES}


def show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if value is None:
        return "null"
    return format_value(value)


def _has(raw: Any, dotted: str) -> bool:
    try:
        lookup(raw, dotted)
        return True
    except KeyError:
        return False


def _source(layers: list[tuple[str, dict]] | None, dotted: str, fallback: str = SCHEMA_DEFAULT) -> str:
    if layers is None:
        return ""
    found = [where for where, raw in layers if _has(raw, dotted)]
    return found[-1] if found else fallback


def _sections(config: dict) -> list[str]:
    """The sweepable sections some method of the grid reads, in schema order."""
    used = {s for name in config["grid"]["methods"] for s in resolve_method(name, config)[0].sections}
    return [s for s in SWEEPABLE_SECTIONS if s in used]


def recipe_rows(config: dict, layers: list[tuple[str, dict]] | None = None) -> list[RecipeRow]:
    """The recipe of a finalized config; `layers` ([(where, raw)] in merge order) give each row's source."""
    evidence, cannot = stated(config), impossible(config)
    rows: list[RecipeRow] = []

    def add(key, value, config_key, source, scope=""):
        rows.append(RecipeRow(key, value, scope, config_key, source, evidence.get(config_key, ""),
                              cannot.get(config_key, "")))

    grid = config["grid"]
    datasets = grid_datasets(config)
    for key in GRID_KEYS:
        where = f"grid.{key}"
        if key == "datasets" and "datasets" not in grid:
            where = "data.name"  # the default: [data.name]
        value = datasets if key == "datasets" else grid.get(key)
        add(f"grid.{key}", value, where, _source(layers, where))
    for name in grid["models"]:
        model = config["models"][name]
        field = "path" if model.get("path") else "id"
        if model.get("package"):
            field = "package"
        builtin = "model registry" if name in BUILTIN_MODELS else SCHEMA_DEFAULT
        key = f"models.{name}.{field}"
        add(key, model.get(field), key, _source(layers, key, builtin))
    multi = any(resolve_dataset(d, config).mode == "multi" for d in datasets)
    for key in DATA_KEYS if multi else DATA_KEYS[:-1]:  # threshold: multi-label only
        add(f"data.{key}", config["data"].get(key), f"data.{key}", _source(layers, f"data.{key}"))
        for dataset in datasets:
            own = getattr(resolve_dataset(dataset, config), key)
            own = list(own) if isinstance(own, tuple) else own  # transforms: as the config lists them
            if own != config["data"].get(key):
                where = f"datasets.{dataset}.{key}"
                add(f"data.{key}", own, where, _source(layers, where, f"dataset {dataset} (built-in)"),
                    scope=f"datasets.{dataset}")
    sections = _sections(config)
    for section in sections:
        for leaf in section_defaults(section):  # in the schema's order
            key = f"{section}.{leaf}"
            if key not in NOT_RECIPE:
                add(key, config[section][leaf], key, _source(layers, key))
    for kind, names in (("models", grid["models"]), ("methods", grid["methods"])):
        for name in names:
            entry = config[kind].get(name) or {}
            if kind == "methods":
                method = resolve_method(name, config)[0]
                if method.optim:  # a method's own optimizer replaces train.optim in its cells
                    where = f"methods.{name}.optim"
                    add("train.optim", method.optim, where, _source(layers, where, f"method {name} (built-in)"),
                        scope=f"methods.{name}")
            for section in sections:
                for leaf, value in (entry.get(section) or {}).items():
                    where = f"{kind}.{name}.{section}.{leaf}"
                    add(f"{section}.{leaf}", value, where, _source(layers, where), scope=f"{kind}.{name}")
    listed = {r.config_key for r in rows}
    for key in [*evidence, *cannot]:
        if key not in listed:
            listed.add(key)
            add(key, lookup(config, key), key, _source(layers, key))
    return rows
