"""One command-line convention: every subcommand that reads a study config takes it as
`snakemake` does (emogrid.cli_config), and known dependency noise stays quiet."""

from __future__ import annotations

import argparse
import importlib
import logging
import subprocess
import sys

import pytest

from emogrid.cli import COMMANDS, main
from emogrid.cli_config import add_config_args, config_from_args, parse_overrides
from emogrid.errors import ConfigError
from emogrid.study.schema import schema_default
from tests.helpers import REPO

STUDY_COMMANDS = ("grid", "status", "plan", "fetch", "aggregate")


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"emogrid {command}")
    importlib.import_module(COMMANDS[command][0]).configure_parser(parser)
    return parser


@pytest.mark.parametrize("command", STUDY_COMMANDS)
def test_every_study_command_takes_config_as_snakemake(command):
    args = _parser(command).parse_args(["--configfile", "a.yaml", "b.yaml", "--configfile", "c.yaml",
                                        "--config", "report_only=True", "x=1"])
    assert args.configfile == ["a.yaml", "b.yaml", "c.yaml"]
    assert args.config == ["report_only=True", "x=1"]
    assert args.config_json is None
    with pytest.raises(SystemExit):  # no base layer under a study any more
        _parser(command).parse_args(["--base", "config.yaml"])


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_args(parser)
    return parser.parse_args(list(argv))


def test_precedence_files_in_order_then_config(tmp_path, monkeypatch):
    base, first, second = (tmp_path / n for n in ("base.yaml", "first.yaml", "second.yaml"))
    base.write_text((REPO / "config.yaml").read_text())
    first.write_text("study: {name: first, description: kept}\ngrid: {seeds: [0, 1]}\n")
    second.write_text("study: {name: second}\n")
    config = config_from_args(_args("--configfile", str(base), str(first), str(second)))
    assert config["study"] == {**config["study"], "name": "second", "description": "kept"}
    assert config["grid"]["seeds"] == [0, 1]
    config = config_from_args(_args("--configfile", str(base), str(first), str(second),
                                    "--config", "study={name: cli}", "report_only=True"))
    assert config["study"]["name"] == "cli" and config["study"]["description"] == "kept"
    assert config["report_only"] is True


def test_default_study_only_when_no_configfile(tmp_path, monkeypatch):
    """./config.yaml is the study when --configfile names none, and never a layer under one."""
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text().replace("patience: 10", "patience: 7"))
    study = tmp_path / "study.yaml"
    study.write_text("grid: {labels: [2], samples: [800], models: [bert-base], methods: [lora]}\n")
    monkeypatch.chdir(tmp_path)
    assert config_from_args(_args())["train"]["patience"] == 7
    assert config_from_args(_args("--config", "report_only=True"))["train"]["patience"] == 7
    alone = config_from_args(_args("--configfile", str(study)))
    assert alone["train"]["patience"] == schema_default("train.patience") != 7
    assert alone["study"]["name"] == schema_default("study.name")
    (tmp_path / "config.yaml").unlink()
    with pytest.raises(ConfigError, match="no study given and no default study"):
        config_from_args(_args())


def test_config_values_parse_as_snakemake_parses_them():
    from snakemake.cli import parse_config

    entries = ["aa=3", "bb=0.5", "cc=True", "dd=text", "ee={k: 1}", "ff="]
    assert parse_overrides(entries) == parse_config(entries)
    # Snakemake reads nested values as text: emogrid then names the key, as the Snakefile does
    assert parse_overrides(entries) == {"aa": 3, "bb": 0.5, "cc": True, "dd": "text", "ee": {"k": "1"}, "ff": None}


def test_config_given_a_file_says_configfile(capsys):
    assert main(["grid", "--config", "studies/quickstart.yaml"]) == 2
    err = capsys.readouterr().err
    assert "--config studies/quickstart.yaml: expected KEY=VALUE" in err
    assert "a config file goes after --configfile" in err
    with pytest.raises(ConfigError, match="Config entry must start with a valid identifier"):
        parse_overrides(["1x=2"])


def test_config_json_is_the_whole_config(tmp_path):
    with pytest.raises(ConfigError, match="without --configfile"):
        config_from_args(_args("--config-json", "{}", "--configfile", "x.yaml"))
    with pytest.raises(ConfigError, match="--config-json: not valid JSON"):
        config_from_args(_args("--config-json", "{nope"))
    with pytest.raises(ConfigError, match="missing.yaml: cannot read it"):
        config_from_args(_args("--configfile", str(tmp_path / "missing.yaml")))


def test_grid_with_config_override_lists_the_same_cells(capsys):
    assert main(["grid", "--configfile", "studies/quickstart.yaml", "--config", "report_only=True"]) == 0
    assert capsys.readouterr().out.split()[0] == "goemotions/minilm/lora/k2_n800/s0"


def test_known_dependency_noise_is_dropped_and_nothing_else():
    """bitsandbytes' optional-kernel message is dropped; its other warnings still show."""
    import emogrid.quiet as quiet

    quiet.install()
    quiet.install()  # idempotent
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger(quiet.BNB_KERNELS[0])
    logger.addHandler(handler)
    try:
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please ...", "x")
        logger.warning("a real bitsandbytes warning")
    finally:
        logger.removeHandler(handler)
    assert seen == ["a real bitsandbytes warning"]
    assert sum(type(f).__name__ == "_DropMessage" for f in logger.filters) == 1


def test_peft_deprecation_future_warning_is_quiet_other_future_warnings_show():
    code = ("import warnings, emogrid\n"
            "from transformers import BertConfig, BertForSequenceClassification\n"
            "m = BertForSequenceClassification(BertConfig(hidden_size=8, num_hidden_layers=1,"
            " num_attention_heads=2, intermediate_size=8, vocab_size=30))\n"
            "m.is_gradient_checkpointing\n"
            "warnings.warn('another FutureWarning', FutureWarning)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "is_gradient_checkpointing" not in proc.stderr
    assert "another FutureWarning" in proc.stderr
