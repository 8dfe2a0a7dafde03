"""The study-config options of every subcommand that reads a study, spelled as Snakemake's.

`emogrid grid | status | plan | fetch | aggregate` take the same options and merge them in
the same order as `snakemake`, so one command line describes one study everywhere:

    config.yaml (--base)  <  --configfile A B ... (in order)  <  --config key=value ...

`--config` entries are parsed by Snakemake's own parser (`key=value`, top-level keys, values
read as int, float, bool, then YAML), so a value means exactly what it means to `snakemake`.
`--config-json` is the whole config as the workflow's rules pass it (Snakemake's merged config).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from emogrid.errors import ConfigError
from emogrid.study.config import DEFAULT_CONFIG, read_yaml
from emogrid.study.merge import deep_merge


def add_config_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("study config (as for snakemake)")
    group.add_argument("--configfile", nargs="+", action="extend", default=[], metavar="FILE",
                       help=f"study files merged over {DEFAULT_CONFIG}, later over earlier "
                            "(several after one flag, or the flag repeated)")
    group.add_argument("--config", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                       help="top-level config values set over the files, parsed as snakemake --config "
                            "parses them (e.g. report_only=True)")
    group.add_argument("--base", default=None, metavar="FILE",
                       help=f"base config merged first (default: ./{DEFAULT_CONFIG} if it exists; "
                            "'none' to skip)")
    group.add_argument("--config-json", default=None, metavar="JSON",
                       help="the whole config as JSON, as Snakemake merged it (what the workflow's "
                            "rules pass), instead of --base and --configfile")


def _options(args: argparse.Namespace) -> tuple[list, list, str | None, str | None]:
    """(configfile, config, base, config_json); a Namespace built by hand may leave some out."""
    return (list(getattr(args, "configfile", None) or []), list(getattr(args, "config", None) or []),
            getattr(args, "base", None), getattr(args, "config_json", None))


def config_given(args: argparse.Namespace) -> bool:
    """Whether any study-config option was given (aggregate reads no config without one)."""
    return any(_options(args))


def raw_config(args: argparse.Namespace) -> dict:
    """The merged config before defaults and validation."""
    configfiles, overrides, base, config_json = _options(args)
    if config_json is not None:
        if configfiles or base:
            raise ConfigError("--config-json is the whole config: give it without --configfile / --base")
        try:
            raw = json.loads(config_json)
        except ValueError as err:
            raise ConfigError(f"--config-json: not valid JSON ({err})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"--config-json: expected a JSON object, got {type(raw).__name__}")
    else:
        raw = {}
        if base not in ("none", ""):
            if Path(base or DEFAULT_CONFIG).is_file():
                raw = read_yaml(base or DEFAULT_CONFIG)
            elif base is not None:
                raise ConfigError(f"--base {base}: no such file")
        for path in configfiles:
            raw = deep_merge(raw, read_yaml(path))
    return deep_merge(raw, parse_overrides(overrides))


def config_from_args(args: argparse.Namespace) -> dict:
    """The complete, validated study config the options describe: one ConfigError with every
    problem of the schema, the semantics, the reference file and the dataset sources."""
    from emogrid.planning.study_check import check_study

    return check_study(raw_config(args))[0]


def parse_overrides(entries: list[str]) -> dict:
    """`--config` entries -> {key: value}, exactly as `snakemake --config` reads them."""
    if not entries:
        return {}
    for entry in entries:
        if "=" not in entry:
            hint = (f"; a config file goes after --configfile ({entry})"
                    if entry.endswith((".yaml", ".yml", ".json")) or Path(entry).is_file() else "")
            raise ConfigError(f"--config {entry}: expected KEY=VALUE, as for snakemake --config{hint}")
    from snakemake.cli import parse_config  # Snakemake's parser: same values as `snakemake --config`

    try:
        return parse_config(entries)
    except ValueError as err:
        raise ConfigError(f"--config {' '.join(entries)}: {err}") from None
