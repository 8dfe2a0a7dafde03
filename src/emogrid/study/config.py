"""Load a study config: read YAML, layer the files, default and validate.

Layering mirrors Snakemake: `config.yaml` first, then each `--configfile` deep-merged on top
(mappings merge, lists and scalars replace). Defaults come from the JSON Schema
(`emogrid.study.schema`), which is also what validates the result; checks a schema can't
express (cross references, taxonomy sizes, readable paths) follow in `emogrid.study.semantics`.
Every problem is reported as a ConfigError naming the key and what was expected.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from emogrid.errors import ConfigError
from emogrid.study.merge import deep_merge
from emogrid.study.schema import apply_defaults, check_schema, load_schema
from emogrid.study.semantics import check_semantics

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
    """Defaults + schema + semantic checks. Returns a new, fully defaulted config."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping, got {type(raw).__name__}")
    schema = load_schema()
    config = apply_defaults(copy.deepcopy(raw), schema, schema)
    check_schema(config, schema)
    check_semantics(config)
    return config
