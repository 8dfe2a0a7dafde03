"""A study named with --configfile is the whole study: no value of any of its cells comes from
config.yaml, which is the default study only when no study is named (emogrid.study.config)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
import yaml

from emogrid.cli_config import add_config_args, config_from_args
from emogrid.study.config import load_config
from tests.default_study import leaves, perturbed, resolved, workflow_copy
from tests.helpers import REPO, plan_config

STUDIES = sorted(p.name for p in (REPO / "studies").glob("*.yaml"))


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_args(parser)
    return parser.parse_args(list(argv))


@pytest.fixture(scope="module")
def default_studies(tmp_path_factory):
    """Two working directories: one with config.yaml as it is, one with every value changed."""
    root = tmp_path_factory.mktemp("default")
    original, changed = root / "original", root / "perturbed"
    for folder, text in ((original, (REPO / "config.yaml").read_text()),
                         (changed, yaml.safe_dump(perturbed(), sort_keys=False))):
        folder.mkdir()
        (folder / "config.yaml").write_text(text)
    return original, changed


def test_the_perturbed_default_study_changes_every_value_and_is_valid(default_studies, monkeypatch):
    before = dict(leaves(yaml.safe_load((REPO / "config.yaml").read_text())))
    after = dict(leaves(perturbed()))
    assert before.keys() == after.keys()
    assert [k for k, v in before.items() if v not in (None, {}) and after[k] == v] == []
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)
    original, changed = default_studies
    monkeypatch.chdir(changed)
    assert config_from_args(_args())["study"]["name"] == "perturbed-default"  # valid: it is the default study


@pytest.mark.parametrize("study", STUDIES)
def test_no_resolved_value_of_a_study_comes_from_config_yaml(study, default_studies, monkeypatch):
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)
    path = str(REPO / "studies" / study)
    original, changed = default_studies
    seen = []
    for folder in (original, changed):
        monkeypatch.chdir(folder)
        seen.append(resolved(config_from_args(_args("--configfile", path))))
    assert seen[0] == seen[1]
    assert seen[0] == resolved(load_config([path]))


def _dry_run(workflow, workdir, *configfiles):
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(workflow / "Snakefile"), "-d", str(workdir),
           "-n", "-p", "--cores", "1", "plan"]  # the plan rule: its job prints the merged config
    if configfiles:
        cmd += ["--configfile", *map(str, configfiles)]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=300)


def test_snakemake_reads_the_study_alone_and_the_default_study_beside_the_snakefile(tmp_path, monkeypatch):
    """`snakemake -d DIR --configfile STUDY` runs STUDY alone; with no study, the config.yaml next to
    the Snakefile (not the one in DIR); with none there, it stops and says so."""
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)
    workflow = workflow_copy(tmp_path / "wf", perturbed())
    work = tmp_path / "work"
    (tmp_path / "work").mkdir()
    (work / "config.yaml").write_text((REPO / "config.yaml").read_text())  # not the workflow's: ignored
    study = REPO / "studies" / "nishat_llama3_emotion6.yaml"
    proc = _dry_run(workflow, work, study)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert plan_config(proc.stdout) == json.loads(json.dumps(load_config([str(study)]), default=str))

    proc = _dry_run(workflow, work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = plan_config(proc.stdout)
    assert merged["study"]["name"] == "perturbed-default"
    assert merged == json.loads(json.dumps(load_config([], folder=workflow), default=str))

    bare = workflow_copy(tmp_path / "bare", None)
    proc = _dry_run(bare, tmp_path / "work2")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    assert f"no study given and no default study {bare / 'config.yaml'}" in out


def test_the_benchmark_specs_are_the_schema_defaults_plus_its_own_recipe(tmp_path, monkeypatch):
    """bench/run.py pins its recipe: no value of its cells comes from config.yaml (or any study file)."""
    import importlib.util

    from emogrid.study import config as config_module
    from emogrid.study.schema import section_defaults

    spec = importlib.util.spec_from_file_location("bench_run", REPO / "bench" / "run.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    read = []
    real = config_module.read_yaml
    monkeypatch.setattr(config_module, "read_yaml", lambda path: read.append(str(path)) or real(path))
    monkeypatch.chdir(REPO)
    cell = bench.cell_spec(tmp_path, {"id": "org/bench-model"}, "lora", 16, 800, epochs=None)
    assert read == []
    train = {k: v for k, v in section_defaults("train").items() if k != "report_to"}
    assert cell["train"] == {**train, **bench.RECIPE["train"], "patience": bench.RECIPE["train"]["epochs"]}
    assert cell["lora"] == bench.RECIPE["lora"]
    full = bench.cell_spec(tmp_path, {"id": "org/bench-model"}, "full", 16, 800, epochs=2)
    assert full["train"]["lr"] == bench.RECIPE["methods"]["full"]["train"]["lr"] and full["train"]["epochs"] == 2
