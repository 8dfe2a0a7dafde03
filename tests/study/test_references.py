"""The published numbers (studies/references/*.csv, issue 20 item 8): each file is well formed,
each paper study names its own, and every row is a cell of the study that names it.

A row that matches no cell would be dropped from the replication view without a word
(`replication_frame` keeps only the study's arms), so the mapping is checked here. The studies
are loaded as the CLI loads a `--configfile` study (emogrid.cli_config), so this test follows
whatever rule the CLI has for merging a study with config.yaml.
"""

from __future__ import annotations

import argparse
import csv

import pandas as pd
import pytest

from emogrid.cli_config import add_config_args, config_from_args
from emogrid.package_data import schema
from emogrid.results.replication import load_reference
from emogrid.study.grid import dataset_definitions, expand_cells
from emogrid.study.reference import resolve_reference
from tests.helpers import REPO

REFERENCES = REPO / "studies" / "references"
COLUMNS = ["study", "dataset", "model", "method", "labels", "samples", "split", "metric", "value",
           "source", "n_eval", "evidence"]
CELL_KEYS = ["dataset", "model", "method", "labels", "samples"]
ROW_KEY = CELL_KEYS + ["split", "metric"]
PAPER_STUDIES = sorted(p.name for p in (REPO / "studies").glob("*.yaml")
                       if p.read_text().startswith("# Reproduces: "))
REFERENCE_FILES = sorted(p.name for p in REFERENCES.glob("*.csv"))


def split_metrics() -> tuple[set[str], set[str]]:
    """(every scalar metric a split of metrics.json may hold, those every split holds): the
    names replication_frame looks up as `<split>_<metric>`. Micro averages and exact match are
    written in multi-label mode only."""
    node = schema("metrics")["$defs"]["split_metrics"]
    scalars = {k for k, v in node["properties"].items() if v.get("$ref") == "#/$defs/fraction"}
    return scalars, scalars & set(node["required"])


def load_study(study: str | None, monkeypatch) -> dict:
    """The study as `emogrid grid --configfile studies/<study>` reads it (None: the default study)."""
    monkeypatch.chdir(REPO)
    parser = argparse.ArgumentParser()
    add_config_args(parser)
    return config_from_args(parser.parse_args(["--configfile", f"studies/{study}"] if study else []))


def unmapped_rows(reference: pd.DataFrame, config: dict) -> list[str]:
    """Reference rows that are no cell of the study, or whose metric the cell's mode does not write."""
    cells = {tuple(c.axes[k] for k in CELL_KEYS) for c in expand_cells(config)}
    modes = {name: defn.mode for name, defn in dataset_definitions(config).items()}
    every, always = split_metrics()
    out = []
    for i, row in enumerate(reference.to_dict("records")):
        key = tuple(row[k] for k in CELL_KEYS)
        if key not in cells:
            out.append(f"row {i + 2} {key}: no such cell")
        elif row["metric"] not in (every if modes[row["dataset"]] == "multi" else always):
            out.append(f"row {i + 2} {key}: {row['metric']} is not a {modes[row['dataset']]}-label metric")
    return out


@pytest.mark.parametrize("name", REFERENCE_FILES)
def test_reference_file_is_well_formed(name):
    path = REFERENCES / name
    with open(path, newline="") as fh:
        raw = list(csv.reader(fh))
    assert raw[0] == COLUMNS
    assert all(len(r) == len(COLUMNS) for r in raw[1:]), "a row with a missing or extra field"
    ref = load_reference(path)  # the replication view's own checks (numbers, split)
    assert (ref["study"] == path.stem).all(), "study column: one file per paper, named as the column"
    assert ref["value"].between(0, 100).all(), "values are percentages"
    assert ref["split"].isin(["val", "test"]).all()
    every, _ = split_metrics()
    assert ref["metric"].isin(every).all(), sorted(set(ref["metric"]) - every)
    n_eval = pd.to_numeric(ref["n_eval"], errors="coerce")
    given = ref["n_eval"].notna()
    assert (n_eval[given] >= 1).all() and (n_eval[given] % 1 == 0).all(), "n_eval: a whole count or blank"
    for col in ("source", "evidence"):
        assert ref[col].fillna("").str.strip().str.len().gt(0).all(), f"{col} left empty"
    assert not ref.duplicated(ROW_KEY).any(), ref[ref.duplicated(ROW_KEY, keep=False)][ROW_KEY]


@pytest.mark.parametrize("study", PAPER_STUDIES)
def test_every_row_is_a_cell_of_its_paper_study(study, monkeypatch):
    config = load_study(study, monkeypatch)
    named = config["report"]["reference"]
    assert named, f"{study}: report.reference not set"
    path = resolve_reference(named)
    assert path.resolve().parent == REFERENCES, f"{study}: report.reference {named} is not in studies/references/"
    ref = load_reference(path)
    assert unmapped_rows(ref, config) == []
    author = (REPO / "studies" / study).read_text().removeprefix("# Reproduces: ").split(",")[0]
    assert ref["source"].str.startswith(author).all(), f"source: cite the study's paper ({author}, ...)"


def test_the_default_study_maps_its_reference(monkeypatch):
    config = load_study(None, monkeypatch)
    assert unmapped_rows(load_reference(config["report"]["reference"]), config) == []


def test_each_paper_has_its_own_file_and_every_file_a_paper(monkeypatch):
    named = {}
    for study in PAPER_STUDIES:
        ref = load_study(study, monkeypatch)["report"]["reference"]
        named[study] = resolve_reference(ref).resolve().name if ref else None
    assert len(set(named.values())) == len(PAPER_STUDIES), named
    assert sorted(named.values()) == REFERENCE_FILES


def test_a_row_of_another_arm_or_mode_is_reported(monkeypatch):
    """The check above can fail: a method the study lacks, a count it does not draw, and a
    multi-label metric on a single-label study are each named."""
    config = load_study("nishat_llama3_emotion6.yaml", monkeypatch)
    ref = load_reference(REFERENCES / "nishat_llama3_emotion6.csv").iloc[[0, 0, 0]].reset_index(drop=True)
    ref.loc[0, "method"] = "qlora"
    ref.loc[1, "samples"] = 1600
    ref.loc[2, "metric"] = "f1_micro"
    problems = unmapped_rows(ref, config)
    assert len(problems) == 3
    assert "no such cell" in problems[0] and "no such cell" in problems[1]
    assert "f1_micro is not a single-label metric" in problems[2]

