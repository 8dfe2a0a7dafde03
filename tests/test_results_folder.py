"""One study, one results folder (emogrid.study.results_dir): the Snakefile and every command that
reads or writes results find a study's folder by one rule (`results:`, else results/<study.name>),
so a second study in the same checkout never touches the first one's tables."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import fixtures_results as F
import pandas as pd
import pytest

import emogrid
from emogrid.cli import COMMANDS
from emogrid.cli_config import results_from_args
from emogrid.study.config import load_config
from emogrid.study.results_dir import study_results_dir
from tests.helpers import REPO, require_data, snakemake
from tests.tiny_models import build_tiny_model

READERS = ("status", "aggregate", "figures", "plan", "fetch", "publish")  # commands with --results


def test_the_folder_is_the_results_key_else_results_slash_study_name():
    assert study_results_dir({"study": {"name": "quickstart"}}) == Path("results/quickstart")
    assert study_results_dir({}) == Path("results/study")  # the schema's default name
    assert study_results_dir({"study": {"name": "q"}, "results": "out/run1"}) == Path("out/run1")
    assert study_results_dir({"results": "/abs/run"}) == Path("/abs/run")
    config = load_config([str(REPO / "studies" / "quickstart.yaml")])
    assert config["results"] is None and study_results_dir(config) == Path("results/quickstart")


def test_every_shipped_study_has_its_own_folder():
    files = [REPO / "config.yaml", *sorted((REPO / "studies").glob("*.yaml"))]
    folders = {f.name: study_results_dir(load_config([str(f)])) for f in files}
    assert len(set(folders.values())) == len(files), folders


@pytest.mark.parametrize("command", READERS)
def test_every_command_finds_the_folder_as_the_snakefile_does(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("a.yaml").write_text("study: {name: alpha}\n")
    parser = argparse.ArgumentParser()
    importlib.import_module(COMMANDS[command][0]).configure_parser(parser)
    first = ["goemotions/m/lora/k2_n40/s0", "--repo", "org/name"] if command == "publish" else []
    assert results_from_args(parser.parse_args([*first, "--configfile", "a.yaml"])) == Path("results/alpha")
    moved = parser.parse_args([*first, "--configfile", "a.yaml", "--config", "results=elsewhere/r1"])
    assert results_from_args(moved) == Path("elsewhere/r1")
    assert results_from_args(parser.parse_args([*first, "--results", "given"])) == Path("given")


def test_diff_and_open_study_take_a_study_file_for_its_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    F.build_tree(tmp_path / "results" / "alpha" / "runs")
    Path("a.yaml").write_text("study: {name: alpha}\n")
    proc = subprocess.run([sys.executable, "-m", "emogrid", "diff", "a.yaml", "results/alpha", "--format", "json",
                           "--fail-on-change"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["a"] == out["b"] == "results/alpha" and not out["only_in_a"] and not out["only_in_b"]
    # open_study with the study file: its folder, and its config (the grid's pending cells)
    study_file = tmp_path / "q.yaml"
    study_file.write_text((REPO / "studies" / "quickstart.yaml").read_text() + "results: out/q\n")
    F.build_tree(tmp_path / "out" / "q" / "runs")
    study = emogrid.open_study(study_file)
    assert study.results_dir == Path("out/q") and study.config["study"]["name"] == "quickstart"
    assert set(study.cells.loc[study.cells.status == "pending", "model"]) == {"minilm"}


def _tiny_quickstart(work: Path, model: Path) -> Path:
    """The quickstart study itself, cut to one tiny cell (its name, so its folder, unchanged)."""
    overlay = work / "tiny.yaml"
    overlay.write_text(textwrap.dedent(f"""\
        grid: {{labels: [2], samples: [40], models: [tiny], methods: [lora]}}
        models: {{tiny: {{path: {model}}}}}
        train: {{epochs: 1, max_length: 32, eval_batch_size: 64}}
        """))
    return overlay


def test_a_second_study_leaves_the_first_studys_tables_unchanged(tmp_path):
    """The issue's "done when": the quickstart, then another study with the same cell ids in the
    same checkout; the quickstart's tables stay byte-identical and each study tables its own cells."""
    data = require_data()
    model = build_tiny_model("bert", tmp_path / "tiny-bert")
    work = tmp_path / "work"
    work.mkdir()
    env = {"EMOGRID_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    quickstart = [REPO / "studies" / "quickstart.yaml", _tiny_quickstart(work, model)]
    proc = snakemake(work, "--cores", "1", configfiles=quickstart, env=env, base=False, timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    tables = work / "results" / "quickstart" / "tables"
    before = {p.name: p.read_bytes() for p in tables.iterdir() if p.is_file()}
    assert "cells.csv" in before and len(pd.read_csv(tables / "cells.csv")) == 1
    assert "the HTML report: snakemake --report results/quickstart/report.html figures --configfile" \
        in proc.stdout + proc.stderr

    other = work / "other.yaml"  # the same cell id, another recipe
    other.write_text("study: {name: other}\ntrain: {lr: 1.0e-2}\n")
    proc = snakemake(work, "--cores", "1", configfiles=[*quickstart, other], env=env, base=False, timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    after = {p.name: p.read_bytes() for p in tables.iterdir() if p.is_file()}
    assert after == before
    cells = pd.read_csv(work / "results" / "other" / "tables" / "cells.csv")
    assert list(cells["cell_id"]) == ["goemotions/tiny/lora/k2_n40/s0"] and (cells["status"] == "ok").all()
    assert sorted(p.name for p in (work / "results").iterdir()) == ["other", "quickstart"]
