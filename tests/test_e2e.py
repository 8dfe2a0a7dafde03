"""The whole DAG on CPU: data -> tiny-model training cells -> tables -> figures -> HTML report.

The grid is trained once per session (tests/conftest_grid.py: finished_grid)."""

from __future__ import annotations

import json

from conftest_grid import RESULTS

from tests.helpers import job_counts, snakemake


def test_whole_grid_runs_and_tables_exist(finished_grid):
    work, proc = finished_grid.work, finished_grid.proc
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    runs = sorted((work / RESULTS / "runs").rglob("metrics.json"))
    assert len(runs) == 2 * 2 * 2
    metrics = json.loads(runs[0].read_text())
    assert metrics["status"] == "ok" and 0.0 <= metrics["test"]["accuracy"] <= 1.0
    cells = (work / RESULTS / "tables" / "cells.csv").read_text().splitlines()
    assert len(cells) == 1 + 8
    for name in ("study_heatmap", "accuracy_vs_samples", "tradeoffs", "per_class_f1"):
        for ext in ("png", "pdf"):
            assert (work / RESULTS / "figures" / f"{name}.{ext}").stat().st_size > 1000


def test_rerun_is_a_no_op(finished_grid):
    work, study, env = finished_grid.work, finished_grid.study, finished_grid.env
    proc = snakemake(work, "-n", configfiles=[study], env=env)
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_html_report_names_every_figure(finished_grid):
    work, study, env = finished_grid.work, finished_grid.study, finished_grid.env
    report = work / RESULTS / "report.html"
    proc = snakemake(work, "--report", str(report), configfiles=[study], env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    html = report.read_text(errors="replace")
    for name in ("study_heatmap", "accuracy_vs_samples", "tradeoffs", "per_class_f1"):
        assert f"{name}.png" in html


def test_report_only_mode_never_schedules_training(finished_grid):
    work, study, env = finished_grid.work, finished_grid.study, finished_grid.env
    more = work / "more.yaml"
    more.write_text("grid: {seeds: [0, 1]}\ntrain: {lr: 2.0e-3}\n")   # new and changed cells
    proc = snakemake(work, "-n", "figures", "--config", "report_only=True",
                     configfiles=[study, more], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout) if "Job stats" in proc.stdout else {}
    assert "train" not in counts and "prepare_data" not in counts
