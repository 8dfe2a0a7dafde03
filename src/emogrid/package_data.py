"""Files shipped inside the package: JSON Schemas and the bundled model configs.

Read through `importlib.resources`, so they are found in a source checkout, an editable
install and a plain `pip install .` (wheel) alike; nothing here looks outside the package.
`workflow/schemas/config.schema.yaml` is a symlink to `schemas/config.schema.yaml`, the file
researchers read and Snakemake's `validate` checks against.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files

import yaml

SCHEMAS = "schemas"
MODEL_CONFIGS = "model_configs"


def _resource(folder: str, name: str):
    return files("emogrid").joinpath(folder, name)


@cache
def schema(kind: str) -> dict:
    """The JSON Schema `schemas/<kind>.schema.yaml` (config, metrics, failure), parsed once."""
    return yaml.safe_load(_resource(SCHEMAS, f"{kind}.schema.yaml").read_text(encoding="utf-8"))


def bundled_model_names() -> list[str]:
    """Stems of the bundled model configs (`model_configs/<stem>.json`)."""
    folder = files("emogrid").joinpath(MODEL_CONFIGS)
    return sorted(p.name[:-len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def bundled_model_config(stem: str) -> dict:
    """The config.json of a bundled model (`model_configs/<stem>.json`)."""
    return json.loads(_resource(MODEL_CONFIGS, f"{stem}.json").read_text(encoding="utf-8"))
