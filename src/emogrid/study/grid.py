"""Expand a validated config into grid cells: pure, fast, shared by the Snakefile and the CLI.

A cell is one training job: (dataset, model, method, labels k, samples n, seed) plus the
values of every swept parameter the method actually reads. Its spec (what `emogrid train`
receives) holds only what affects that cell, so changing a parameter reruns exactly the
cells that use it.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass, field

from emogrid.study.arms import arm_configs
from emogrid.study.cell_id import BASE_AXES, CellId, format_value, format_variant, short_variant, subset_dir  # noqa: F401 (re-exported)
from emogrid.study.dataset_definition import DatasetDefinition
from emogrid.study.methods import (
    BUILTIN_METHODS,
    EVAL_TRAIN_KEYS,
    Method,
    config_sections,
    make_method,
    method_spec,
    trains,
)
from emogrid.study.schema import SWEEPABLE_SECTIONS
from emogrid.study.semantics import defined_methods

METHOD_FIELDS = ("peft", "quantize", "use_dora", "optim", "description")


@dataclass(frozen=True)
class Cell:
    cell_id: str
    axes: dict = field(hash=False)
    spec: dict = field(hash=False, repr=False)

    @property
    def id(self) -> CellId:
        return CellId.parse(self.cell_id)

    @property
    def data_dir(self) -> str:
        """Subset folder, relative to the results directory."""
        return self.id.data_dir

    @property
    def run_dir(self) -> str:
        return self.id.run_dir


def find_sweeps(config: dict) -> dict[str, list]:
    """{'lora.r': [8, 16], ...}: every list-valued leaf of a sweepable section."""
    return {f"{section}.{key}": value
            for section in SWEEPABLE_SECTIONS
            for key, value in config[section].items()
            if isinstance(value, list)}


def resolve_method(name: str, config: dict) -> tuple[Method, dict]:
    """The registry entry with the config's overrides, and the method's section overrides."""
    entry = defined_methods(config)[name]
    base = BUILTIN_METHODS.get(entry.get("base", name))
    params = ({f: getattr(base, f) for f in METHOD_FIELDS} | {"loraplus": "loraplus" in base.sections}
              if base else {"quantize": "none"})
    params.update({f: entry[f] for f in METHOD_FIELDS if f in entry})
    method = make_method(params.pop("peft"), params.pop("quantize"), **params)
    overrides = {s: dict(entry[s]) for s in SWEEPABLE_SECTIONS if entry.get(s)}
    return method, overrides


def merge_overrides(model_overrides: dict, method_overrides: dict) -> dict:
    """Section overrides of one (model, method): top level < models.<name> < methods.<m>."""
    out = {s: dict(v) for s, v in model_overrides.items()}
    for section, values in method_overrides.items():
        out.setdefault(section, {}).update(values)
    return out


# Train keys added after cells had results: hashed only when they differ from these defaults
# (the values that reproduce those cells), so adding them reruns no finished cell.
LATER_TRAIN_DEFAULTS = {"max_steps": None, "restore_best": True}


def config_hash(spec: dict) -> str:
    hashed = {k: v for k, v in spec.items() if k != "config_hash"}
    if isinstance(hashed.get("train"), dict):
        hashed["train"] = {k: v for k, v in hashed["train"].items()
                           if k not in LATER_TRAIN_DEFAULTS or v != LATER_TRAIN_DEFAULTS[k]}
    blob = json.dumps(hashed, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def dataset_definitions(config: dict) -> dict[str, DatasetDefinition]:
    """grid.datasets -> complete definitions (emogrid.study.datasets), in grid order."""
    from emogrid.study.datasets import grid_datasets, resolve_dataset

    return {name: resolve_dataset(name, config) for name in grid_datasets(config)}


def expand_cells(config: dict) -> list[Cell]:
    """Every cell of the study in grid order: the union of its arms (emogrid.study.arms), each
    cell once, or the full cross product of its axes when it has none."""
    cells: dict[str, Cell] = {}
    for one in arm_configs(config):
        for cell in _expand_grid(one):
            cells.setdefault(cell.cell_id, cell)  # arms may overlap: a cell is one job
    return list(cells.values())


def _expand_grid(config: dict) -> list[Cell]:
    from emogrid.study.semantics import dataset_labels

    grid = config["grid"]
    sweeps = find_sweeps(config)
    cells: list[Cell] = []
    definitions = dataset_definitions(config)
    for dataset, defn in definitions.items():
        cells += _expand_dataset(config, grid, sweeps, defn, dataset_labels(config, dataset, defn))
    return cells


def _expand_dataset(config: dict, grid: dict, sweeps: dict, data: DatasetDefinition,
                    labels: list[int]) -> list[Cell]:
    cells: list[Cell] = []
    for model_name in grid["models"]:
        model = config["models"][model_name]
        # `id` is optional by design (a local path or a package may stand in); the rest have schema defaults
        model_spec = {"name": model_name, "id": model.get("id"), "path": model["path"],
                      "revision": model["revision"], "trust_remote_code": bool(model["trust_remote_code"])}
        model_overrides = {s: dict(model[s]) for s in SWEEPABLE_SECTIONS if model.get(s)}
        for method_name in grid["methods"]:
            method, method_overrides = resolve_method(method_name, config)
            overrides = merge_overrides(model_overrides, method_overrides)
            relevant = {key: values for key, values in sweeps.items()
                        if key.split(".")[0] in method.sections
                        and key.split(".")[1] not in overrides.get(key.split(".")[0], {})
                        and _reads(method, key)}
            keys = sorted(relevant)
            for combo in itertools.product(*(relevant[k] for k in keys)):
                chosen = dict(zip(keys, combo))
                sections = _sections_for(config, method, overrides, chosen)
                variant = format_variant(chosen)
                for k, n, seed in itertools.product(labels, grid["samples"], grid["seeds"]):
                    cells.append(_make_cell(data, model_spec, method_name, method, sections,
                                            variant, chosen, k, n, seed))
    return cells


def _reads(method: Method, key: str) -> bool:
    """Whether a swept key changes a method's cells: an untrained cell reads only the train
    keys its evaluation uses."""
    section, leaf = key.split(".", 1)
    return trains(method.peft) or section != "train" or leaf in EVAL_TRAIN_KEYS


def _sections_for(config: dict, method: Method, overrides: dict, chosen: dict) -> dict:
    sections = {}
    for section in method.sections:
        values = copy.deepcopy(config[section])
        if section == "train" and method.optim:
            values["optim"] = method.optim
        values.update(overrides.get(section, {}))
        for key, value in chosen.items():
            sec, leaf = key.split(".", 1)
            if sec == section:
                values[leaf] = value
        for leaf, value in values.items():
            if isinstance(value, list) and not _reads(method, f"{section}.{leaf}"):
                values[leaf] = value[0]  # a sweep this method ignores: one value, never a cell per value
        if section == "train":
            values.pop("report_to", None)  # global, via the environment (training.tracking): never reruns a cell
        sections[section] = values
    return sections


def _make_cell(data, model_spec, method_name, method, sections, variant, chosen, k, n, seed) -> Cell:
    dataset = data.name
    cell_id = str(CellId(dataset, model_spec["name"], method_name, k, n, seed, variant))
    axes = {"dataset": dataset, "model": model_spec["name"], "method": method_name,
            "labels": k, "samples": n, "seed": seed, **chosen}
    spec = {"cell": axes, "cell_id": cell_id, "model": model_spec,
            "method": method_spec(method_name, method, sections),
            **{s: v for s, v in sections.items() if s != "loraplus"},
            "data": {"mode": data.mode, "threshold": data.threshold}}
    spec["config_hash"] = config_hash(spec)
    return Cell(cell_id=cell_id, axes=axes, spec=spec)


# ---------------------------------------------------------------- the spec contract

SPEC_KEYS = {"cell": BASE_AXES, "model": ("name", "path", "revision", "trust_remote_code"),
             "method": ("name", "peft", "quantize", "use_dora", "loraplus_ratio"),
             "data": ("mode", "threshold")}
SPEC_DROPPED = {"train": ("report_to",)}  # global settings, never part of a cell


def spec_sections(method: dict) -> tuple[str, ...]:
    """The config sections a cell spec carries for its `method` block (docs/CONTRACTS.md)."""
    return tuple(s for s in config_sections(method["peft"], method["quantize"]) if s != "loraplus")


def check_spec(spec: dict) -> None:
    """A cell spec is complete: every key the trainer reads, so nothing downstream needs a default.
    CellError naming the missing keys (a spec written by hand or by an older emogrid)."""
    from emogrid.errors import CellError
    from emogrid.study.schema import section_defaults

    missing = [k for k in ("cell", "cell_id", "model", "method", "train", "data") if k not in spec]
    if not missing:
        missing = [f"{block}.{k}" for block, keys in SPEC_KEYS.items() for k in keys if k not in spec[block]]
    if not missing:
        for section in spec_sections(spec["method"]):
            if section not in spec:
                missing.append(section)
                continue
            wanted = set(section_defaults(section)) - set(SPEC_DROPPED.get(section, ()))
            missing += [f"{section}.{k}" for k in sorted(wanted - set(spec[section]))]
    if missing:
        raise CellError(f"the cell spec lacks {', '.join(missing)}",
                        hint="regenerate it from the config (`emogrid grid --json`, or let snakemake pass it)")


def subsets(cells: list[Cell]) -> list[tuple[str, int, int, int]]:
    """Distinct (dataset, k, n, seed) subsets, in grid order: one data job each."""
    seen = dict.fromkeys((c.axes["dataset"], c.axes["labels"], c.axes["samples"], c.axes["seed"])
                         for c in cells)
    return list(seen)
