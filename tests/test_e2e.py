"""The whole DAG on CPU: data -> tiny-model training cells -> tables -> figures -> HTML report."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.helpers import job_counts, require_data, snakemake


@pytest.fixture(scope="module")
def finished_grid(tiny_models, tmp_path_factory):
    data = require_data()
    work = tmp_path_factory.mktemp("e2e")
    study = work / "study.yaml"
    study.write_text(textwrap.dedent(f"""\
        study: {{name: e2e}}
        grid: {{labels: [2, 3], samples: [60], models: [tiny-llama, tiny-bert], methods: [lora, full], seeds: [0]}}
        models:
          tiny-llama: {{path: {tiny_models['llama']}}}
          tiny-bert: {{path: {tiny_models['bert']}}}
        train: {{batch_size: 8, epochs: 1, lr: 1.0e-3, precision: fp32}}
        resources: {{train: {{gpu: 0}}}}
        """))
    env = {"EMOGRID_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1"}
    proc = snakemake(work, "--cores", "2", configfiles=[study], env=env, timeout=900)
    return work, study, env, proc


def test_whole_grid_runs_and_tables_exist(finished_grid):
    work, _study, _env, proc = finished_grid
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    runs = sorted((work / "results" / "runs").rglob("metrics.json"))
    assert len(runs) == 2 * 2 * 2
    metrics = json.loads(runs[0].read_text())
    assert metrics["status"] == "ok" and 0.0 <= metrics["test"]["accuracy"] <= 1.0
    cells = (work / "results" / "tables" / "cells.csv").read_text().splitlines()
    assert len(cells) == 1 + 8
    for name in ("study_heatmap", "accuracy_vs_samples", "tradeoffs", "per_class_f1"):
        for ext in ("png", "pdf"):
            assert (work / "results" / "figures" / f"{name}.{ext}").stat().st_size > 1000


def test_rerun_is_a_no_op(finished_grid):
    work, study, env, _proc = finished_grid
    proc = snakemake(work, "-n", configfiles=[study], env=env)
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_html_report_names_every_figure(finished_grid):
    work, study, env, _proc = finished_grid
    report = work / "results" / "report.html"
    proc = snakemake(work, "--report", str(report), configfiles=[study], env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    html = report.read_text(errors="replace")
    for name in ("study_heatmap", "accuracy_vs_samples", "tradeoffs", "per_class_f1"):
        assert f"{name}.png" in html


def test_report_only_mode_never_schedules_training(finished_grid):
    work, study, env, _proc = finished_grid
    more = work / "more.yaml"
    more.write_text("grid: {seeds: [0, 1]}\ntrain: {lr: 2.0e-3}\n")   # new and changed cells
    proc = snakemake(work, "-n", "figures", "--config", "report_only=True",
                     configfiles=[study, more], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout) if "Job stats" in proc.stdout else {}
    assert "train" not in counts and "prepare_data" not in counts
