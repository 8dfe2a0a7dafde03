"""Checked before anything runs (emogrid.planning.study_check): every problem of a config in one
message, a malformed report.reference named by file, line and column, lora.targets with a
did-you-mean, and local datasets drawn into their subsets with the data step's own messages."""

from __future__ import annotations

import copy
import csv

import pytest
import yaml

from emogrid.errors import ConfigError
from emogrid.planning.study_check import check_study
from emogrid.study.merge import deep_merge
from tests.helpers import REPO, snakemake

BASE = yaml.safe_load((REPO / "config.yaml").read_text())
HEADER = "study,dataset,model,method,labels,samples,split,metric,value\n"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)


def with_(patch: dict) -> dict:
    return deep_merge(copy.deepcopy(BASE), patch)


def error_of(raw: dict, deep: bool = False) -> str:
    with pytest.raises(ConfigError) as info:
        check_study(raw, deep=deep)
    return str(info.value)


def reference(tmp_path, text: str, name: str = "ref.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --------------------------------------------------------------------------- report.reference


def test_a_malformed_reference_names_file_line_and_column(tmp_path):
    ref = reference(tmp_path, HEADER + "p,goemotions,bert-base,lora,2,800,test,accuracy,n/a\n"
                                       "p,goemotions,bert-base,lora,two,800,dev,acuracy,80\n")
    msg = error_of(with_({"report": {"reference": ref}}))
    assert f"report.reference: {ref}: line 2, column value: expected a number, got 'n/a'" in msg
    assert "line 3, column labels: expected a whole number >= 1, got 'two'" in msg
    assert "line 3, column split: expected val or test, got 'dev'" in msg
    assert "line 3, column metric: unknown metric 'acuracy' (did you mean 'accuracy'?)" in msg
    assert msg.count("\n  - ") == 4  # one line per problem, in one message


def test_a_missing_reference_or_column_stops_the_config(tmp_path):
    msg = error_of(with_({"report": {"reference": str(tmp_path / "nope.csv")}}))
    assert f"report.reference: {tmp_path / 'nope.csv'} does not exist" in msg
    ref = reference(tmp_path, "study,dataset,model,method,labels,samples,split,value\n")
    assert "lacks column(s) metric (line 1, the header: " in error_of(with_({"report": {"reference": ref}}))


def test_reference_rows_without_a_cell_are_a_warning(tmp_path):
    ref = reference(tmp_path, HEADER + "p,goemotions,bert-base,qlora,2,800,val,accuracy,90\n"
                                       "p,goemotions,bert-base,qlora,3,800,val,accuracy,80\n"
                                       "p,goemotions,nobody,qlora,2,800,val,accuracy,70\n")
    raw = with_({"grid": {"models": ["bert-base"], "methods": ["qlora"], "labels": [2], "samples": [800]},
                 "report": {"reference": ref}})
    config, warnings = check_study(raw)
    assert config["report"]["reference"] == ref and len(warnings) == 1
    assert f"report.reference: {ref}: 2 of 3 row(s) match no cell of this study (lines 3, 4;" in warnings[0]


def test_the_default_reference_resolves_from_any_working_directory(tmp_path, monkeypatch):
    # config.yaml names studies/references/... relative to the checkout; run from elsewhere
    monkeypatch.chdir(tmp_path)
    config, _ = check_study(copy.deepcopy(BASE))
    from emogrid.results.replication import load_reference

    assert len(load_reference(config["report"]["reference"])) == 7


# --------------------------------------------------------------------------- one message


def test_schema_semantic_and_target_problems_come_in_one_message():
    raw = with_({"train": {"lr": -1.0}, "lora": {"targets": "atention", "rank": 4},
                 "grid": {"models": ["bert-base"], "labels": [2], "samples": [800]}})
    msg = error_of(raw, deep=True)
    assert "train.lr: expected number > 0, got -1.0" in msg and "lora: unknown key 'rank'" in msg
    assert "lora.targets 'atention' for model 'bert-base' (bert" in msg
    assert "(did you mean 'attention'?); presets for bert: qv, attention, all-linear; its linear modules: " in msg
    assert "query" in msg.split("its linear modules:")[1]


@pytest.mark.parametrize("grid, grid_message", [
    ({"labels": []}, "grid.labels: must not be empty"),
    ({"methods": ["lora", "lroa"]}, "grid.methods[1]: method 'lroa' is not defined"),
    ({"labels": "2"}, "grid.labels: expected array, got '2'"),
])
def test_a_grid_error_does_not_hide_a_misspelt_target(grid, grid_message):
    """A grid error stops the cells from expanding; the targets are still checked (on the config
    without what was rejected), with their did-you-mean, in the same message."""
    raw = with_({"lora": {"targets": "querry,value"}, "train": {"epochs": 0}})
    raw["grid"] = {**raw["grid"], "models": ["bert-base"], "methods": ["lora"], "samples": [800], **grid}
    msg = error_of(raw, deep=True)
    assert grid_message in msg and "train.epochs: expected integer >= 1, got 0" in msg
    assert "lora.targets 'querry,value' for model 'bert-base' (bert" in msg and "(did you mean 'query,value'?)" in msg
    assert msg.count("lora.targets") == 1


def test_a_misspelt_module_list_gets_the_closest_modules():
    raw = with_({"lora": {"targets": "querry,value"}, "grid": {"models": ["bert-base"], "labels": [2]}})
    msg = error_of(raw, deep=True)
    assert "target modules ['querry'] not found" in msg and "(did you mean 'query,value'?)" in msg
    check_study(with_({"lora": {"targets": "querry,value"}}), deep=False)  # light commands: no model built


# --------------------------------------------------------------------------- local datasets, read now


def write_table(path, labels_per_row, n=60):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows((f"example number {i} is fine", labels_per_row(i)) for i in range(n))


def local(tmp_path, grid: dict, **entry) -> dict:
    d = tmp_path / "two"
    d.mkdir(exist_ok=True)
    write_table(d / "train.csv", lambda i: i % 2, n=60)
    write_table(d / "test.csv", lambda i: i % 2, n=20)
    raw = with_({"datasets": {"two": {"path": str(d), "text": "text", "label": "label", **entry}}})
    raw["grid"] = {**raw["grid"], "datasets": ["two"], "models": ["bert-base"], "methods": ["lora"],
                   "seeds": [0, 1], **grid}
    return raw


def test_local_dataset_subsets_are_drawn_before_anything_runs(tmp_path):
    raw = local(tmp_path, {"labels": [4], "samples": [40]})
    check_study(raw)  # the cheap check cannot see the file's labels (no label_names)
    msg = error_of(raw, deep=True)
    assert "dataset 'two', subset k=4 n=40 seed=0: labels k = 4: dataset 'two' has only 2 labels" in msg
    msg = error_of(local(tmp_path, {"labels": [2], "samples": [40, 200]}), deep=True)
    assert ("dataset 'two', subset k=2 n=200 seed=0: " in msg and "too few single-label examples for k=2, n=200: "
            "label '0' has 30 single-label examples in the train split, 100 needed" in msg)
    assert "n=40" not in msg  # the draws that work say nothing
    msg = error_of(local(tmp_path, {"labels": [2], "samples": [40]}, splits={"test": "held_out"}), deep=True)
    assert "no split 'held_out' for datasets.two.splits.test; the source has ['test', 'train']" in msg
    config, _ = check_study(local(tmp_path, {"labels": [2], "samples": [40]}), deep=True)
    assert config["grid"]["datasets"] == ["two"]


def test_snakemake_stops_before_scheduling_with_every_problem(tmp_path):
    """A missing reference and a local dataset without enough labels: one message from the dry run,
    no MissingInputException, no job."""
    raw = local(tmp_path, {"labels": [4], "samples": [40], "seeds": [0]})
    study = {k: raw[k] for k in ("datasets", "grid")}
    study["report"] = {"reference": str(tmp_path / "missing.csv")}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    (tmp_path / "work").mkdir()
    proc = snakemake(tmp_path / "work", "-n", configfiles=[tmp_path / "study.yaml"])
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out and "MissingInputException" not in out
    assert f"report.reference: {tmp_path / 'missing.csv'} does not exist" in out
    assert "labels k = 4: dataset 'two' has only 2 labels" in out
    assert "prepare_data" not in out
