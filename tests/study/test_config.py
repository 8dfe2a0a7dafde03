"""Every bad config a user can write gets one clear error naming the key; good ones default."""

from __future__ import annotations

import copy

import pytest
import yaml

from emogrid.cli import main as cli
from emogrid.errors import ConfigError
from emogrid.planning.study_check import check_study
from emogrid.study.config import finalize, load_config
from emogrid.study.merge import deep_merge
from emogrid.study.schema import check_overrides, schema_default
from tests.helpers import REPO

BASE = yaml.safe_load((REPO / "config.yaml").read_text())


def with_(patch: dict) -> dict:
    return deep_merge(copy.deepcopy(BASE), patch)


def error_of(raw: dict) -> str:
    """The one message a user gets for a config: every check a study passes before it runs."""
    with pytest.raises(ConfigError) as info:
        check_study(raw)
    return str(info.value)


def test_default_config_is_valid_and_defaulted():
    config = finalize(copy.deepcopy(BASE))
    assert config["grid"]["labels"] == [2, 4, 8, 16]
    assert config["train"]["batch_size"] == 4 and config["train"]["lr"] == 1e-4
    # keys absent from config.yaml come from the schema's defaults
    assert config["adalora"]["target_r"] == 8
    assert config["loraplus"]["ratio"] == 16
    assert config["data"]["threshold"] == 0.5


@pytest.mark.parametrize(
    "patch, expected",
    [
        ({"trian": {"lr": 1.0e-4}}, "unknown key 'trian' (did you mean 'train'?)"),
        ({"train": {"learning_rate": 1.0e-4}}, "train: unknown key 'learning_rate'"),
        ({"lora": {"rank": 8}}, "lora: unknown key 'rank'"),
        ({"train": {"batch_size": "four"}}, "train.batch_size: expected integer >= 1, got 'four'"),
        ({"train": {"lr": "1e-4"}}, "YAML reads 1e-4 as text"),
        ({"train": {"epochs": 0}}, "train.epochs: expected integer >= 1, got 0"),
        ({"train": {"eval_every": "weekly"}}, "train.eval_every: expected epoch, '<x> epoch(s)'"),
        ({"train": {"scheduler": "cosin"}}, "train.scheduler: expected one of cosine, linear"),
        ({"grid": {"labels": []}}, "grid.labels: must not be empty"),
        ({"grid": {"seeds": []}}, "grid.seeds: must not be empty"),
        ({"grid": {"labels": [2, 2]}}, "grid.labels: values must be distinct"),
        ({"lora": {"r": []}}, "lora.r: must not be empty"),
        ({"lora": {"r": [8, "x"]}}, "lora.r[1]: expected integer >= 1, got 'x'"),
        ({"data": {"mode": "multiple"}}, "data.mode: expected one of single, multi"),
        ({"grid": {"models": ["bert-base", "roberta"]}}, "grid.models[1]: model 'roberta' is not defined"),
        ({"grid": {"methods": ["qlora", "prefix"]}}, "grid.methods[1]: method 'prefix' is not defined"),
        ({"grid": {"labels": [2, 28]}}, "grid.labels[1]: 28 labels requested but taxonomy 'original' has only 27"),
        ({"data": {"taxonomy": "ekman"}, "grid": {"labels": [7]}}, "taxonomy 'ekman' has only 6"),
        ({"models": {"my model": {"id": "x/y"}}}, "models: 'my model' is not a safe name"),
        ({"models": {"bad": {"id": "x/y; rm -rf ~"}}}, "models.bad.id: 'x/y; rm -rf ~' is not a safe name"),
        ({"grid": {"models": ["$(reboot)"]}}, "grid.models[0]: '$(reboot)' is not a safe name"),
        ({"data": {"name": "../escape"}}, "data.name: '../escape' is not a safe name"),
        ({"data": {"path": "/nonexistent/goemotions"}}, "/nonexistent/goemotions"),
        (
            {"models": {"bert-base": {"path": "/nonexistent/model"}}},
            "models.bert-base.path: /nonexistent/model is not a model directory",
        ),
        ({"methods": {"myrank": {"lora": {"r": 8}}}}, "methods.myrank: a new method needs 'base'"),
        ({"methods": {"myrank": {"base": "lorra"}}},
         "methods.myrank.base: unknown built-in method 'lorra' (did you mean 'lora'?)"),
        ({"methods": {"qlora": {"lora": {"r": [8, 16]}}}}, "sweep it at the top level"),
        ({"models": {"bert-base": {"lora": {"rank": 8}}}}, "models.bert-base.lora: unknown key 'rank'"),
        (
            {"models": {"bert-base": {"train": {"lr": [1.0e-4, 2.0e-4]}}}},
            "models.bert-base.train.lr: expected a single value",
        ),
        ({"models": {"bert-base": {"optim": "adamw"}}}, "models.bert-base: unknown key 'optim'"),
        (
            {"models": {"bert-base": {"train": {"epochs": 0}}}},
            "models.bert-base.train.epochs: expected integer >= 1, got 0",
        ),
        ({"lora": {"targets": "q_proj v_proj"}}, "lora.targets"),
        ({"resources": {"train": {"slurm_account": "a b"}}}, "resources.train.slurm_account"),
        ({"grid": {"samples": [10]}}, "grid.samples[0]: 10 samples x data.val_fraction 0.1 leaves fewer than one"),
    ],
)
def test_bad_config_names_key_and_expectation(patch, expected, monkeypatch):
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)
    assert expected in error_of(with_(patch))


# One validator for every place a value can be written: what the top level rejects, a
# per-method override rejects too, with the same words and the full key path.
@pytest.mark.parametrize("section, key, value, expected", [
    ("train", "epochs", 0, "expected integer >= 1, got 0"),
    ("train", "lr", -1.0, "expected number > 0, got -1.0"),
    ("train", "batch_size", -3, "expected integer >= 1, got -3"),
    ("train", "scheduler", "bogus", "expected one of cosine, linear"),
    ("train", "lr", "1e-4", "YAML reads 1e-4 as text; write it with a dot"),
    ("train", "warmup_ratio", 1.5, "expected number >= 0 and < 1, got 1.5"),
    ("lora", "r", 0, "expected integer >= 1, got 0"),
    ("lora", "targets", "q_proj v_proj", "lora.targets"),
    ("lora", "rank", 8, "unknown key 'rank'"),
    ("quant", "compute_dtype", "int4", "expected one of auto, fp32, bf16, fp16"),
])
def test_method_overrides_pass_the_top_level_schema(section, key, value, expected, monkeypatch):
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)
    top = error_of(with_({section: {key: value}}))
    over = error_of(with_({"methods": {"full": {section: {key: value}}}}))
    assert expected in top
    assert f"methods.full.{section}" in over and expected in over
    assert over.split(f"methods.full.{section}", 1)[1] == top.split(section, 1)[1]


def test_check_overrides_is_reusable_for_any_place():
    assert check_overrides("models.bert-base", {"train": {"lr": 2.0e-5}, "lora": {"r": 8}}) == []
    problems = check_overrides("models.bert-base", {"train": {"epochs": 0}, "lora": "big",
                                                    "trian": {}})
    assert problems == ["models.bert-base: unknown section 'trian' (did you mean 'train'?); "
                        "sections that can be overridden: train, lora, ia3, adalora, loraplus, quant"]
    problems = check_overrides("models.bert-base", {"train": {"epochs": 0}, "lora": "big"})
    assert "models.bert-base.train.epochs: expected integer >= 1, got 0" in problems
    assert any(p.startswith("models.bert-base.lora: expected object") for p in problems)
    # a list is a sweep: only where the caller allows it, and then each value is checked
    assert "sweep it at the top level" in check_overrides("m", {"lora": {"r": [8, 16]}})[0]
    assert check_overrides("m", {"lora": {"r": [8, 16]}}, allow_sweep=True) == []
    assert check_overrides("m", {"lora": {"r": [8, 0]}}, allow_sweep=True) == [
        "m.lora.r[1]: expected integer >= 1, got 0 (a list here makes the key a swept axis)"]


def test_unreadable_data_dir_from_env_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("EMOGRID_DATA_DIR", str(tmp_path / "missing"))
    assert "EMOGRID_DATA_DIR" in error_of(copy.deepcopy(BASE))


def test_missing_grid_section():
    assert "missing required key 'grid'" in error_of({})


def test_several_errors_reported_at_once():
    msg = error_of(with_({"train": {"lr": -1.0, "epochs": 0}, "lora": {"rank": 8}}))
    assert "train.lr" in msg and "train.epochs" in msg and "lora: unknown key 'rank'" in msg


def test_explicit_labels_must_match_grid(monkeypatch):
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)
    msg = error_of(with_({"data": {"labels": ["joy", "anger", "sadnes"]}, "grid": {"labels": [2]}}))
    assert "unknown label(s) ['sadnes']" in msg and "grid.labels must be [3]" in msg
    config = finalize(with_({"data": {"labels": ["joy", "anger"]}, "grid": {"labels": [2]}}))
    assert config["data"]["labels"] == ["joy", "anger"]


def test_study_files_merge_like_snakemake(tmp_path):
    study = tmp_path / "s.yaml"
    study.write_text("grid: {methods: [lora, full]}\ntrain: {lr: 2.0e-4}\n")
    config = load_config([str(REPO / "config.yaml"), str(study)])  # both named: merged in order
    assert config["grid"]["methods"] == ["lora", "full"]          # lists replace
    assert config["grid"]["labels"] == [2, 4, 8, 16]              # untouched keys stay
    assert config["train"]["lr"] == 2e-4 and config["train"]["batch_size"] == 4  # maps merge
    assert config["train"]["patience"] == BASE["train"]["patience"] == 10


def test_a_study_file_alone_is_the_whole_study(tmp_path, monkeypatch):
    """config.yaml is not merged under a study (not even one in the working directory)."""
    monkeypatch.chdir(REPO)
    study = tmp_path / "s.yaml"
    study.write_text("grid: {models: [bert-base], methods: [lora, full]}\ntrain: {lr: 2.0e-4}\n")
    config = load_config([str(study)])
    assert config["train"]["lr"] == 2e-4
    assert config["train"]["patience"] == schema_default("train.patience") != BASE["train"]["patience"]
    assert config["lora"]["targets"] == schema_default("lora.targets") != BASE["lora"]["targets"]
    assert config["report"]["reference"] is None and "train" not in config["resources"]
    assert config["models"]["bert-base"] == {"id": "google-bert/bert-base-uncased", "path": None,
                                             "revision": None, "trust_remote_code": False}  # the built-in


def test_no_study_given_reads_the_default_study_or_says_there_is_none(tmp_path):
    assert load_config([], folder=REPO)["study"]["name"] == BASE["study"]["name"]
    with pytest.raises(ConfigError, match=r"no study given and no default study .*config\.yaml: name a study "
                                          r"with --configfile FILE"):
        load_config([], folder=tmp_path)


@pytest.mark.parametrize("study", sorted(p.name for p in (REPO / "studies").glob("*.yaml")))
def test_every_study_file_is_valid(study, monkeypatch):
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)
    load_config([str(REPO / "studies" / study)])


def test_cli_reports_user_error_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: {models: [bert-base], methods: [lora], labels: []}\n")
    assert cli(["grid", "--configfile", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "grid.labels: must not be empty" in err and "Traceback" not in err


def test_cli_reports_unparsable_yaml(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [unclosed\n")
    assert cli(["grid", "--configfile", str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
