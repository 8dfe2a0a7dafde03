"""The study-config options of every subcommand that reads a study, spelled as Snakemake's.

`emogrid grid | status | plan | fetch | aggregate` take the same options and read them by the
same rule as the Snakefile (emogrid.study.config), so one command line describes one study
everywhere:

    schema defaults  <  --configfile A B ... (in order)  <  --config key=value ...

With no `--configfile`, the study is the default study, `./config.yaml` (the Snakefile reads
the one beside it); it is never merged under a study that `--configfile` names.
`--config` entries are parsed by Snakemake's own parser (`key=value`, top-level keys, values
read as int, float, bool, then YAML), so a value means exactly what it means to `snakemake`.
`--config-json` is the whole config as the workflow's rules pass it (Snakemake's merged config).

The study's results folder follows the Snakefile's rule too (emogrid.study.results_dir:
`results:`, else `results/<study.name>`); `--results DIR` names one outright.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from emogrid.errors import ConfigError
from emogrid.study.config import DEFAULT_CONFIG, merge_layers, read_study
from emogrid.study.results_dir import study_results_dir


def add_config_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("study config (as for snakemake)")
    group.add_argument("--configfile", nargs="+", action="extend", default=[], metavar="FILE",
                       help=f"the study's files, later merged over earlier (several after one flag, or the "
                            f"flag repeated); none: the default study ./{DEFAULT_CONFIG}")
    group.add_argument("--config", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                       help="top-level config values set over the files, parsed as snakemake --config "
                            "parses them (e.g. report_only=True)")
    group.add_argument("--config-json", default=None, metavar="JSON",
                       help="the whole config as JSON, as Snakemake merged it (what the workflow's "
                            "rules pass), instead of --configfile")


def add_results_arg(parser: argparse.ArgumentParser, *, writes: str = "reads") -> None:
    """`--results DIR`: the study's results folder, by default the one its config names."""
    parser.add_argument("--results", default=None, metavar="DIR",
                        help=f"the results folder it {writes} (default: the study's own, as the Snakefile "
                             f"finds it: the config's `results:`, else results/<study.name>)")


def results_from_args(args: argparse.Namespace) -> Path:
    """`--results` when given, else the study's results folder by the Snakefile's rule."""
    given = getattr(args, "results", None)
    if given:
        return Path(given)
    try:
        return study_results_dir(raw_config(args))
    except ConfigError as err:
        raise ConfigError(f"{err}; or name the results folder with --results DIR") from None


def _options(args: argparse.Namespace) -> tuple[list, list, str | None]:
    """(configfile, config, config_json); a Namespace built by hand may leave some out."""
    return (list(getattr(args, "configfile", None) or []), list(getattr(args, "config", None) or []),
            getattr(args, "config_json", None))


def config_given(args: argparse.Namespace) -> bool:
    """Whether any study-config option was given (aggregate reads no config without one)."""
    return any(_options(args))


def config_layers(args: argparse.Namespace) -> list[tuple[str, dict]]:
    """[(where, raw values)] in merge order: the study's files (or --config-json), then --config."""
    configfiles, overrides, config_json = _options(args)
    parsed = parse_overrides(overrides)
    if config_json is not None:
        if configfiles:
            raise ConfigError("--config-json is the whole config: give it without --configfile")
        try:
            raw = json.loads(config_json)
        except ValueError as err:
            raise ConfigError(f"--config-json: not valid JSON ({err})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"--config-json: expected a JSON object, got {type(raw).__name__}")
        layers = [("--config-json", raw)]
    else:
        layers = read_study(configfiles, ".")  # the default study: ./config.yaml
    return layers + ([("--config", parsed)] if parsed else [])


def raw_config(args: argparse.Namespace) -> dict:
    """The merged config before defaults and validation."""
    return merge_layers(config_layers(args))


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
