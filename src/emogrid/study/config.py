"""Load a study config: read YAML, merge the study's files, default and validate.

The rule, the same for `snakemake` and every `emogrid` subcommand: **a study is the files
given with `--configfile`** (merged in order, as Snakemake merges them: mappings merge, lists
and scalars replace), on top of the schema's defaults and under `--config`. `config.yaml` is
the *default study*: read only when no `--configfile` is given, never a base layer under
another study, so a change to it changes no other study. Snakemake finds it next to the
Snakefile (`workflow.basedir`), the `emogrid` commands in the working directory; where it is
missing the run stops and says so.

Defaults come from the JSON Schema (`emogrid.study.schema`), which is also what validates the
result; built-in model names are resolved from `emogrid.study.model_registry`; checks a schema
can't express (cross references, taxonomy sizes, readable paths, `study.stated` keys) follow
in `emogrid.study.semantics`. Every problem of both passes is reported in one ConfigError, one
line each, naming the key and what was expected.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from emogrid.errors import ConfigError
from emogrid.study.merge import deep_merge
from emogrid.study.model_registry import resolve_models
from emogrid.study.schema import apply_defaults, load_schema, schema_problems
from emogrid.study.semantics import semantic_problems

DEFAULT_CONFIG = "config.yaml"  # the default study's file name (in the workflow's folder)


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


def default_study(folder: str | os.PathLike) -> Path:
    """`folder/config.yaml`, the default study; ConfigError when there is none."""
    path = Path(folder) / DEFAULT_CONFIG
    if not path.is_file():
        raise ConfigError(f"no study given and no default study {path.absolute()}: name a study with "
                          f"--configfile FILE (e.g. studies/quickstart.yaml), or add {DEFAULT_CONFIG} there")
    return path


def study_files(configfiles: list | tuple = (), folder: str | os.PathLike = ".") -> list[Path]:
    """The files that make up the study: the ones given, else the default study of `folder`."""
    return [Path(p) for p in configfiles] if configfiles else [default_study(folder)]


def read_study(configfiles: list | tuple = (), folder: str | os.PathLike = ".") -> list[tuple[str, dict]]:
    """[(file, its raw mapping)] in merge order (see `study_files`)."""
    label = "{}" if configfiles else "{} (the default study)"
    return [(label.format(path), read_yaml(path)) for path in study_files(configfiles, folder)]


def merge_layers(layers: list[tuple[str, dict]]) -> dict:
    raw: dict = {}
    for _where, values in layers:
        raw = deep_merge(raw, values)
    return raw


def load_config(configfiles: list | tuple = (), folder: str | os.PathLike = ".") -> dict:
    """The study `configfiles` describe (or the default study of `folder`), defaulted and validated."""
    return finalize(merge_layers(read_study(configfiles, folder)))


def workflow_default_study(workflow) -> str | None:
    """For the Snakefile: the default study to load, or None when `--configfile` named the study.

    Snakemake (>= 8) keeps the command line's config files in `workflow.overwrite_configfiles`
    (`config_settings.configfiles`, made absolute before `--directory` applies); the default
    study is looked up next to the Snakefile, so `--directory` never changes which study runs.
    """
    given = getattr(workflow, "overwrite_configfiles", None)
    if given is None:
        settings = getattr(workflow, "config_settings", None)
        if settings is None or not hasattr(settings, "configfiles"):
            raise ConfigError("this Snakemake does not say which --configfile it was given "
                              "(workflow.overwrite_configfiles): emogrid needs Snakemake >= 9")
        given = settings.configfiles
    return None if given else str(default_study(workflow.basedir))


def finalize(raw: dict) -> dict:
    """Built-in models + defaults + schema + semantic checks. Returns a new, fully defaulted
    config; every problem of both passes in one ConfigError."""
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
    config = apply_defaults(resolve_models(copy.deepcopy(raw)), schema, schema)
    problems = schema_problems(config, schema)
    try:
        problems += [p for p in semantic_problems(config) if p not in problems]
    except (KeyError, TypeError, AttributeError, ValueError, IndexError):
        if not problems:
            raise
    return config, problems


def format_problems(problems: list[str]) -> str:
    return "invalid config:\n  - " + "\n  - ".join(problems)
