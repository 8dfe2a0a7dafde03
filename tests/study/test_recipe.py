"""The recipe as data: `study.stated` (what the paper states, where), `emogrid grid --explain`
(each value and where it was set) and the report's recipe table."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from emogrid.cli import main
from emogrid.errors import ConfigError
from emogrid.report.paper_tables.recipe import recipe_frame, render
from emogrid.study.config import finalize, load_config
from emogrid.study.recipe import recipe_rows
from emogrid.study.stated import lookup
from tests.helpers import REPO

PAPERS = ["motaharfar_goemotions_grid", "patil_llama3_sentiment5", "xu_distilbert_imdb_agnews",
          "vinayaka_emotion_multilabel", "nishat_llama3_emotion6"]
STUDY = {"grid": {"labels": [2], "samples": [800], "models": ["bert-base"], "methods": ["lora", "qlora", "full"]}}


@pytest.mark.parametrize("paper", PAPERS)
def test_every_paper_states_its_recipe_with_evidence_for_keys_that_exist(paper, monkeypatch):
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)
    raw = yaml.safe_load((REPO / "studies" / f"{paper}.yaml").read_text())
    config = load_config([str(REPO / "studies" / f"{paper}.yaml")])
    stated = raw["study"]["stated"]
    assert len(stated) >= 9
    for key, text in stated.items():
        lookup(config, key)  # KeyError if the config has no such key
        assert isinstance(text, str) and len(text.strip()) > 10, key
        assert text.split(":")[0].strip(), key  # where in the paper, before the colon
    rows = recipe_rows(config)
    assert {r.config_key for r in rows if r.stated} == set(stated)
    cannot = raw["study"].get("impossible", {})
    for key, text in cannot.items():
        lookup(config, key)
        assert isinstance(text, str) and len(text.strip()) > 10, key
    assert {r.config_key for r in rows if r.impossible} == set(cannot)


@pytest.mark.parametrize("paper", PAPERS)
def test_explain_counts_each_recipe_value_once(paper, capsys, monkeypatch):
    """`emogrid grid --explain` sorts every recipe value into stated / ours / impossible and its
    first line counts them (the counts of the paper-review note)."""
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)
    study = REPO / "studies" / f"{paper}.yaml"
    raw = yaml.safe_load(study.read_text())
    assert main(["grid", "--explain", "--configfile", str(study)]) == 0
    out = capsys.readouterr().out.splitlines()
    table = out[2:out.index("")] if "" in out else out[2:]
    categories = [line.split()[-1] for line in table]
    assert set(categories) <= {"stated", "ours", "impossible"}
    counts = {c: categories.count(c) for c in ("stated", "ours", "impossible")}
    assert out[0].endswith(f"{len(table)} values, {counts['stated']} stated by the paper (study.stated), "
                           f"{counts['ours']} ours, {counts['impossible']} impossible (study.impossible)")
    cannot = set(raw["study"].get("impossible", {}))
    assert counts["impossible"] >= len(cannot)  # a key with a per-cell override has a row per scope
    assert counts["stated"] + counts["impossible"] >= len(set(raw["study"]["stated"]) | cannot)


@pytest.mark.parametrize("stated, expected", [
    ({"train.learning_rate": "Sec. 4: 5e-5"}, "study.stated.train.learning_rate: the config has no key"),
    ({"models.bert-base.idd": "Sec. 4: bert"}, "study.stated.models.bert-base.idd: the config has no key"),
    ({"train.lr": "   "}, "study.stated.train.lr: expected where the paper states it"),
    ({"train.lr": ""}, "study.stated.train.lr: expected where the paper states it"),
])
def test_a_stated_key_must_exist_and_say_where(stated, expected):
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        finalize({**STUDY, "study": {"stated": stated}})


@pytest.mark.parametrize("cannot, expected", [
    ({"train.learning_rate": "Sec. 4: not public"}, "study.impossible.train.learning_rate: the config has no key"),
    ({"train.lr": " "}, "study.impossible.train.lr: expected why the paper's value cannot run here"),
])
def test_an_impossible_key_must_exist_and_say_why(cannot, expected):
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        finalize({**STUDY, "study": {"impossible": cannot}})


def test_impossible_wins_over_stated_and_is_counted_apart():
    config = finalize({**STUDY, "study": {"stated": {"train.lr": "Sec. 2: 2e-4", "grid.models": "Sec. 1: bert"},
                                          "impossible": {"grid.models": "Sec. 1: their own BERT, not public"}}})
    rows = {r.config_key: r for r in recipe_rows(config)}
    assert rows["train.lr"].category == "stated" and rows["grid.models"].category == "impossible"
    assert rows["train.epochs"].category == "ours"
    frame = recipe_frame(config)
    models = frame[frame["config_key"] == "grid.models"].iloc[0]
    assert models["source"] == "impossible" and models["evidence"] == "Sec. 1: bert; Sec. 1: their own BERT, not public"
    assert render(frame)["md"].splitlines()[0].endswith(
        f"{len(frame) - 2} ours, 1 impossible here (study.impossible: why)")


def test_recipe_lists_how_the_data_is_drawn():
    rows = {r.config_key: r for r in recipe_rows(finalize({**STUDY, "data": {"draw": "natural"}}))}
    assert rows["data.draw"].value == "natural" and rows["data.val_from"].value == "subset"
    assert rows["data.transforms"].text == "[]"


def test_stated_keys_reach_names_with_dots():
    config = finalize({"grid": {**STUDY["grid"], "models": ["qwen2.5-1.5b"]},
                       "study": {"stated": {"models.qwen2.5-1.5b.id": "Models: Qwen 2.5"}}})
    assert lookup(config, "models.qwen2.5-1.5b.id") == "Qwen/Qwen2.5-1.5B"
    with pytest.raises(KeyError):
        lookup(config, "models.qwen2.5-1.5b.id.x")


def test_explain_says_where_each_value_was_set(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)  # config.yaml is right here: it is not the study
    study = tmp_path / "s.yaml"
    study.write_text(yaml.safe_dump({
        **STUDY, "study": {"stated": {"train.lr": "Sec. 2: 2e-4", "methods.full.train.lr": "Sec. 3: 1e-5"}},
        "train": {"lr": 2.0e-4, "epochs": 3},
        "models": {"bert-base": {"lora": {"r": 4}}},
        "methods": {"full": {"train": {"lr": 1.0e-5}}}}))
    extra = tmp_path / "extra.yaml"
    extra.write_text("lora: {dropout: 0.2}\n")
    assert main(["grid", "--explain", "--configfile", str(study), str(extra), "--config", "report_only=True"]) == 0
    out = capsys.readouterr().out
    rows = {(r.split()[0], r.split()[2]): r.split() for r in out.splitlines()[2:] if r and not r.startswith(" ")}
    assert rows[("train.lr", "all")][1:] == ["0.0002", "all", str(study), "stated"]
    assert rows[("train.epochs", "all")][3] == str(study)
    assert rows[("train.batch_size", "all")][3:] == ["schema", "default", "ours"]
    assert rows[("lora.dropout", "all")][3] == str(extra)
    assert rows[("lora.r", "models.bert-base")][1] == "4"
    assert rows[("train.lr", "methods.full")][1:] == ["1e-05", "methods.full", str(study), "stated"]
    assert rows[("train.optim", "methods.qlora")][1:] == ["adamw_8bit", "methods.qlora", "method", "qlora",
                                                          "(built-in)", "ours"]
    assert rows[("models.bert-base.id", "all")][3:] == ["model", "registry", "ours"]
    assert "stated by the paper:\n  train.lr: Sec. 2: 2e-4\n  methods.full.train.lr: Sec. 3: 1e-5" in out
    assert "config.yaml" not in out


def test_explain_names_config_overrides():
    from emogrid.study.recipe import recipe_rows

    layers = [("s.yaml", {**STUDY, "lora": {"r": 4}}), ("--config", {"lora": {"r": 8}})]
    rows = {(r.key, r.scope): r for r in recipe_rows(finalize({**STUDY, "lora": {"r": 8}}), layers)}
    assert (rows[("lora.r", "")].value, rows[("lora.r", "")].source) == (8, "--config")
    assert rows[("grid.labels", "")].source == "s.yaml" and rows[("lora.alpha", "")].source == "schema default"


def test_explain_of_the_nishat_study_shows_no_value_from_config_yaml(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)
    assert main(["grid", "--explain", "--configfile", "studies/nishat_llama3_emotion6.yaml"]) == 0
    out = capsys.readouterr().out
    assert "config.yaml" not in out
    sources = {line.split("  ")[0]: line for line in out.splitlines()[2:] if line and not line.startswith(" ")}
    assert "studies/nishat_llama3_emotion6.yaml" in sources["train.weight_decay"]
    assert "model registry" in sources["models.llama-3-8b.id"]
    # the default study is read only when no study is named
    assert main(["grid", "--explain"]) == 0
    assert "config.yaml (the default study)" in capsys.readouterr().out


def test_recipe_table_lists_paper_and_ours(tmp_path):
    config = load_config([str(REPO / "studies" / "xu_distilbert_imdb_agnews.yaml")])
    frame = recipe_frame(config)
    by_key = {(r["key"], r["cells"]): r for r in frame.to_dict("records")}
    assert by_key[("train.lr", "all")]["value"] == "5e-05" and by_key[("train.lr", "all")]["source"] == "paper"
    assert by_key[("train.lr", "all")]["evidence"].startswith("Sec. 4")
    assert by_key[("train.scheduler", "all")]["source"] == "ours" and not by_key[("train.scheduler", "all")]["evidence"]
    assert by_key[("lora.r", "all")]["value"] == "[4, 8, 16, 32]"
    texts = render(frame)
    assert texts["md"].startswith(f"**Recipe** — {len(frame)} values, {(frame['source'] == 'paper').sum()} stated")
    assert "| train.lr | 5e-05 | all | paper | Sec. 4" in texts["md"]
    assert r"\begin{tabular}" in texts["tex"] and r"train.lr & 5e-05" in texts["tex"].replace(r"\_", "_")
    (tmp_path / "recipe.csv").write_text(texts["csv"])
    assert pd.read_csv(tmp_path / "recipe.csv").shape == frame.shape
    assert render(recipe_frame(None))["md"].count("\n| ") == 2  # header + "no study config" row


def test_aggregate_writes_the_recipe_of_its_study(tmp_path):
    import fixtures_results as F

    from emogrid.report import aggregate as A

    F.build_tree(tmp_path / "runs", multi=False)
    config = load_config([str(REPO / "studies" / "nishat_llama3_emotion6.yaml")])
    A.aggregate(tmp_path / "runs", tmp_path / "tables", config=config)
    recipe = pd.read_csv(tmp_path / "tables" / "recipe.csv", keep_default_na=False)
    assert set(recipe.columns) >= {"key", "value", "source", "evidence"}
    row = recipe[recipe["key"] == "train.lr"].iloc[0]
    assert row["value"] == "1e-05" and row["source"] == "paper" and row["evidence"].startswith("Sec. III")
