"""workflow/rules/report.smk through Snakemake on a synthetic, finished results tree.

Checks the promises of the report rules:
- report-only mode (EMOGRID_REPORT_ONLY=1) regenerates tables + figures + report.html from
  finished results alone: its DAG holds `aggregate` and `figures` only, even when data files
  are newer than the results and the training config changed;
- editing plotting code reruns `figures` only; editing table code reruns `aggregate` and
  `figures`; neither schedules data or training jobs (Snakemake rerun triggers: mtime with
  checksums, params, input, software-env, code);
- a failed cell (failure.json, no metrics.json) enters `aggregate` through its failure.json
  and never blocks the tables.
The workflow is copied to a temp dir so editing its code does not touch the checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import fixtures_results as F
import pytest

from emogrid.report import plots, tables

REPO = Path(__file__).resolve().parents[2]
STUDY = REPO / "studies" / "quickstart.yaml"
RESULTS = Path("results") / "quickstart"  # the study's own folder: results/<study.name>
OLD, NEWER = 1_700_000_000, 1_700_003_600  # data files, then results one hour later

pytestmark = pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not installed")


def test_output_names_live_in_one_module():
    """Tables, figures and the rules all take their file names from emogrid.report.outputs."""
    from emogrid.report import outputs

    assert tables.TABLE_FILES is outputs.TABLE_FILES and plots.FIGURES is outputs.FIGURE_NAMES
    rules = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    for name in outputs.TABLE_STEMS + outputs.FIGURE_NAMES + ["cells.parquet", "levels.json"]:
        assert f'"{name}' not in rules, f"{name} is spelled out in a rule file"
    captions = REPO / "workflow" / "report"
    for name in outputs.FIGURE_NAMES:
        assert (captions / f"{name}.rst").is_file(), name
    for caption, _sub in outputs.REPORT_TABLES.values():
        assert (captions / caption).is_file(), caption
    for name in outputs.AGGREGATE_CODE + outputs.FIGURES_CODE:
        assert (REPO / "src" / "emogrid" / name).is_file(), name


@pytest.mark.parametrize("package, declared", [("report/figures", "FIGURES_CODE"),
                                               ("report/paper_tables", "AGGREGATE_CODE"),
                                               ("results", "AGGREGATE_CODE")])
def test_every_report_module_reruns_its_rule(package, declared):
    """Each module of emogrid.report.figures is an input of the `figures` rule, each of
    emogrid.report.paper_tables and emogrid.results one of `aggregate`: editing any of them
    reruns the rule."""
    from emogrid.report import outputs

    code = set(getattr(outputs, declared))
    modules = {f"{package}/{p.name}" for p in (REPO / "src" / "emogrid" / package).glob("*.py")
               if p.name != "__init__.py" or package != "results"} - NOT_AGGREGATED
    assert modules and modules <= code, modules - code


# results modules that no report rule runs (emogrid diff; emogrid tune-select, the tuning
# checkpoints' command), so editing them reruns nothing
NOT_AGGREGATED = {"results/tree_diff.py", "results/tune_select.py"}


def test_modules_outside_the_report_rules_are_not_imported_by_them():
    import ast

    for name in ("aggregate.py", "tables.py", "plots.py"):
        tree = ast.parse((REPO / "src" / "emogrid" / "report" / name).read_text())
        imported = {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
                    for a in n.names} | {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not any("tree_diff" in str(m) for m in imported), name


def test_report_inputs_follow_report_only_mode(tmp_path):
    from emogrid.report import rule_inputs as reporting

    done, failed, pending = (tmp_path / "runs" / c for c in ("done", "failed", "pending"))
    for d in (done, failed, pending):
        d.mkdir(parents=True)
    (done / "metrics.json").write_text("{}")
    (failed / "failure.json").write_text("{}")
    dirs = [str(done), str(failed), str(pending)]
    assert reporting.result_inputs(dirs, False) == [f"{done}/metrics.json", f"{failed}/failure.json",
                                                     f"{pending}/metrics.json"]
    assert reporting.result_inputs(dirs, True) == []
    assert reporting.results_fingerprint(tmp_path, False) == ""
    before = reporting.results_fingerprint(tmp_path, True)
    (pending / "metrics.json").write_text("{}")
    assert reporting.results_fingerprint(tmp_path, True) != before
    assert reporting.report_only({"report_only": True}, {}) and reporting.report_only({}, {"EMOGRID_REPORT_ONLY": "1"})
    assert not reporting.report_only({"report_only": False}, {})


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    root = tmp_path_factory.mktemp("wf")
    wf = root / "wf"
    wf.mkdir()
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / name, wf / name)
    for name in ("workflow", "envs"):
        shutil.copytree(REPO / name, wf / name)
    shutil.copytree(REPO / "src" / "emogrid", wf / "src" / "emogrid",
                    ignore=shutil.ignore_patterns("__pycache__"))
    work = root / "work"
    results = work / RESULTS
    from emogrid.study.config import load_config
    from emogrid.study.grid import expand_cells

    cells = expand_cells(load_config([str(STUDY)]))
    for i, cell in enumerate(cells):
        data = results / cell.data_dir
        data.mkdir(parents=True, exist_ok=True)
        for name in ("train.jsonl", "val.jsonl", "test.jsonl", "manifest.json"):
            (data / name).write_text("{}\n")
        a = cell.axes
        F.write_cell(results / "runs", a["dataset"], a["model"], a["method"], "", {}, a["labels"],
                     a["samples"], a["seed"], 0.8 + 0.01 * i,
                     extra_prov={"config_hash": cell.spec["config_hash"]})
        for name in ("predictions.jsonl", "train_log.jsonl", "run.log"):
            (results / cell.run_dir / name).write_text("")
    _set_mtimes(results)
    return {"wf": wf, "work": work, "cells": cells}


def _set_mtimes(results: Path) -> None:
    for path in (results / "data").rglob("*"):
        if path.is_file():
            os.utime(path, (OLD, OLD))
    for path in (results / "runs").rglob("*"):
        if path.is_file():
            os.utime(path, (NEWER, NEWER))


def snakemake(wf, work, *args, report_only=False, configfiles=(), config=(), check=True):
    env = dict(os.environ)
    env.pop("EMOGRID_REPORT_ONLY", None)
    if report_only:
        env["EMOGRID_REPORT_ONLY"] = "1"
    # targets first: --configfile takes every word after it
    cmd = [sys.executable, "-m", "snakemake", "-s", str(wf["wf"] / "Snakefile"), "--cores", "1",
           *args, "--configfile", str(STUDY), *map(str, configfiles)]
    if config:
        cmd += ["--config", *config]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def planned_jobs(output: str) -> set[str]:
    return set(re.findall(r"^(?:local)?rule (\w+):", output, re.M))


def test_report_only_regenerates_without_training(workflow, tmp_path):
    wf, work = workflow, workflow["work"]
    # data newer than the results and a changed training recipe: a normal run would retrain
    for path in (work / RESULTS / "data").rglob("*.jsonl"):
        os.utime(path, None)
    overlay = tmp_path / "lr.yaml"
    overlay.write_text("train:\n  lr: 0.001\n")
    # the config switch (Snakemake parses True, not true) and the environment switch agree
    dry = snakemake(wf, work, "-n", "figures", configfiles=[overlay], config=["report_only=True"])
    assert planned_jobs(dry) == {"aggregate", "figures"}
    _set_mtimes(work / RESULTS)

    out = snakemake(wf, work, "figures", report_only=True)
    # the run's last line says how to build the HTML report (--report is a mode, not a target)
    assert (f"the HTML report: snakemake --report {RESULTS}/report.html figures --configfile {STUDY} "
            "--config report_only=True") in out
    for name in plots.FIGURES:
        for ext in ("png", "pdf"):
            assert (work / RESULTS / "figures" / f"{name}.{ext}").stat().st_size > 0
    for name in tables.TABLE_FILES:
        assert (work / RESULTS / "tables" / name).is_file()
    snakemake(wf, work, "--report", f"{RESULTS}/report.html", "figures", report_only=True)
    html = (work / RESULTS / "report.html").read_text(errors="replace")
    for name in plots.FIGURES:
        assert f"{name}.png" in html, name
    # the report says how to regenerate itself with this study's own files, and where they are
    assert f"figures --configfile {STUDY} --config report_only=True" in html
    assert f"snakemake --report {RESULTS}/report.html figures --configfile {STUDY}" in html
    assert f"{RESULTS}/tables/problems.md" in html

    # plotting code edited: figures only; table code: aggregate + figures
    with open(wf["wf"] / "src" / "emogrid" / "report" / "plots.py", "a") as fh:
        fh.write("\n# style tweak\n")
    assert planned_jobs(snakemake(wf, work, "-n", "figures", report_only=True)) == {"figures"}
    # ... and a normal full run plans no data or training job for it either
    normal = planned_jobs(snakemake(wf, work, "-n"))
    assert "figures" in normal and not normal & {"train", "prepare_data"}
    with open(wf["wf"] / "src" / "emogrid" / "report" / "tables.py", "a") as fh:
        fh.write("\n# table tweak\n")
    assert planned_jobs(snakemake(wf, work, "-n", "figures", report_only=True)) == {"aggregate", "figures"}


def test_failed_cell_does_not_block_aggregation(workflow):
    wf, work = workflow, workflow["work"]
    cell = workflow["cells"][-1]
    run_dir = work / RESULTS / cell.run_dir
    (run_dir / "metrics.json").unlink()
    (run_dir / "failure.json").write_text(
        '{"status": "failed", "error": {"type": "OutOfMemoryError", "message": "oom"}}')
    _set_mtimes(work / RESULTS)
    out = snakemake(wf, work, "-n", "figures")
    assert planned_jobs(out) == {"aggregate", "figures"}
    assert f"{cell.run_dir}/failure.json" in out


def test_failed_aggregate_job_keeps_the_previous_tables(workflow):
    """Snakemake deletes a job's outputs before it runs: the tables are update() outputs, so a
    failing `aggregate` leaves (restores) the previous ones instead of an empty folder."""
    wf, work = workflow, workflow["work"]
    snakemake(wf, work, "figures", report_only=True)
    tables_dir = work / RESULTS / "tables"
    before = {p.name: p.read_bytes() for p in tables_dir.iterdir() if p.is_file()}
    assert "cells.csv" in before and "study_accuracy.md" in before
    code = wf["wf"] / "src" / "emogrid" / "report" / "tables.py"
    original = code.read_text()
    try:
        code.write_text(original + "\nraise RuntimeError('a bug in table code')\n")
        out = snakemake(wf, work, "figures", report_only=True, check=False)
        assert "a bug in table code" in out or "Error in rule aggregate" in out
        after = {p.name: p.read_bytes() for p in tables_dir.iterdir() if p.is_file()}
        assert after == before
    finally:
        code.write_text(original)
