"""The config schema (package data): its defaults, and its violations as messages.

`emogrid/schemas/config.schema.yaml` is the one source of every default: `apply_defaults`
fills a config from it, and `schema_default` / `section_defaults` give them to readers of a
partial config. `schema_problems` and `check_overrides` turn jsonschema errors into one line per
problem that names the key, what was expected and, for a misspelt key, the likely one.
"""

from __future__ import annotations

import copy
import difflib
import re
from typing import Any

SWEEPABLE_SECTIONS = ("train", "lora", "ia3", "adalora", "loraplus", "quant")
MAX_ERRORS = 12


def load_schema() -> dict:
    from emogrid.package_data import schema

    return schema("config")


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


def schema_problems(config: dict, schema: dict) -> list[str]:
    """One line per schema violation (at most MAX_ERRORS, then a count); [] when valid."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    lines = list(dict.fromkeys(_describe(e, schema) for e in errors[:MAX_ERRORS]))
    return lines + ([f"... and {len(errors) - MAX_ERRORS} more schema errors"] if len(errors) > MAX_ERRORS else [])


def without_rejected(raw: dict, config: dict, schema: dict) -> dict:
    """A copy of `raw` without every value the schema rejects in `config` (its defaulted form):
    each such key falls back to its default, an unknown key goes, a rejected list item goes.
    So the checks after the schema can still run and report in the same message."""
    import jsonschema

    out = copy.deepcopy(raw)
    for error in jsonschema.Draft202012Validator(schema).iter_errors(config):
        path = list(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = error.schema.get("properties", {})
            for name in [k for k in error.instance if k not in allowed]:
                _drop(out, path + [name])
        elif path:
            _drop(out, path)
    return out


def _drop(tree: Any, path: list) -> None:
    """Remove the value at `path` from a nested dict/list, if it is there (a list emptied by it goes too)."""
    parents = [tree]
    for step in path[:-1]:
        node = parents[-1]
        if isinstance(node, dict) and step in node or isinstance(node, list) and isinstance(step, int) \
                and 0 <= step < len(node):
            parents.append(node[step])
        else:
            return
    node, last = parents[-1], path[-1]
    if isinstance(node, dict) and last in node:
        del node[last]
    elif isinstance(node, list) and isinstance(last, int) and 0 <= last < len(node):
        del node[last]
        if not node and len(path) > 1 and isinstance(parents[-2], dict):
            del parents[-2][path[-2]]


# ---------------------------------------------------------------- overrides

def check_overrides(where: str, overrides: dict, *, allow_sweep: bool = False) -> list[str]:
    """Problems of a partial `{section: {key: value}}` written somewhere below the top level.

    One validator for every place a value can be written: `methods.<m>.<section>`,
    `models.<name>.<section>`, ... are checked against the very schema entries
    (`$defs`, ranges, enums, dotted floats) that validate the top-level sections, without
    filling in defaults (an override holds only what it changes). `where` prefixes every
    message (`methods.full`); a list value is a sweep, which only the top level may hold
    unless `allow_sweep`. Returns the messages, [] when the overrides are valid, so a caller
    (semantic_problems) reports them with every other problem in one ConfigError.
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
