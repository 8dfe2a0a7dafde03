"""Load a study config: read YAML, layer the files, default and validate.

Layering mirrors Snakemake: `config.yaml` first, then each `--configfile` deep-merged on top
(mappings merge, lists and scalars replace). Defaults come from the JSON Schema
(`emogrid.study.schema`), which is also what validates the result; checks a schema can't
express (cross references, taxonomy sizes, readable paths) follow in `emogrid.study.semantics`.
Every problem of both passes is reported in one ConfigError, one line each, naming the key and
what was expected.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from emogrid.errors import ConfigError
from emogrid.study.merge import deep_merge
from emogrid.study.schema import apply_defaults, load_schema, schema_problems
from emogrid.study.semantics import semantic_problems

DEFAULT_CONFIG = "config.yaml"


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
    """Defaults + schema + semantic checks. Returns a new, fully defaulted config; every problem
    of both passes in one ConfigError."""
    config, problems = config_problems(raw)
    if problems:
        raise ConfigError(format_problems(problems))
    return config


def config_problems(raw: dict) -> tuple[dict, list[str]]:
    """(the defaulted config, every schema and semantic problem): both passes run, so a user
    fixes a file once instead of learning its errors in stages. The semantic checks read a
    config the schema passed; where the schema found problems and a semantic check cannot run
    on what it rejected, the schema's messages stand for it."""
    if not isinstance(raw, dict):
        return {}, [f"config: expected a mapping, got {type(raw).__name__}"]
    schema = load_schema()
    config = apply_defaults(copy.deepcopy(raw), schema, schema)
    problems = schema_problems(config, schema)
    try:
        problems += [p for p in semantic_problems(config) if p not in problems]
    except (KeyError, TypeError, AttributeError, ValueError, IndexError):
        if not problems:
            raise
    return config, problems


def format_problems(problems: list[str]) -> str:
    return "invalid config:\n  - " + "\n  - ".join(problems)
