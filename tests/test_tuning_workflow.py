"""A tuned study through Snakemake on a tiny BERT and a toy dataset it can learn: the jobs before
and after the choice (dry runs), the choice (lr 10 diverges and loses), the report's Tuning
section, a rerun that trains nothing, a changed choice that reruns exactly its group's cells,
and successive halving's checkpoint chain (slow)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from toy_data import write_toy_csv

from tests.helpers import job_counts, snakemake

ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
RESULTS = Path("results") / "tuned"  # the study's own folder: results/<study.name>


def tuned_study(work, tiny_models, tune: str, methods: str = "[full, lora]"):
    data = write_toy_csv(work / "toy")
    study = work / "study.yaml"
    study.write_text(textwrap.dedent(f"""\
        study: {{name: tuned}}
        datasets:
          toy: {{path: {data}, text: text, label: label, val_fraction: 0.25}}
        grid: {{datasets: [toy], labels: [3], samples: [120], models: [tiny-bert], methods: {methods}, seeds: [0]}}
        models:
          tiny-bert: {{path: {tiny_models['bert']}}}
        train: {{batch_size: 8, epochs: 3, lr: 1.0e-3, precision: fp32, eval_every: epoch, patience: 0,
                 max_length: 32, eval_batch_size: 64}}
        lora: {{targets: attention}}
        resources: {{train: {{gpu: 0, mem_mb: 2000}}}}
        report: {{reference: null}}
        tune: {tune}
        """))
    return study


def overlay(work, name, text):
    path = work / name
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def tuned(tiny_models, tmp_path_factory):
    work = tmp_path_factory.mktemp("tuned")
    # tiny BERT on the toy set learns at these rates (measured); at lr 10 its loss explodes
    study = tuned_study(work, tiny_models, "{params: {train.lr: [1.0e-2, 10.0]}, "
                                           "methods: {full: {train.lr: [3.0e-3, 10.0]}}}")
    before = snakemake(work, "-n", configfiles=[study], env=ENV)
    proc = snakemake(work, "--cores", "2", configfiles=[study], env=ENV, timeout=1800)
    return work, study, before, proc


def test_before_the_choice_the_dag_holds_the_tuning_and_the_study_cells(tuned):
    _work, _study, before, _proc = tuned
    assert before.returncode == 0, before.stderr[-3000:]
    counts = job_counts(before.stdout)
    assert counts["tune_train"] == 2 * 2      # (full, lora) x 2 learning rates x tune.seeds [0]
    assert counts["tune_select"] == 2         # one choice per (dataset, model, method)
    assert counts["train"] == 2               # the study's cells, planned behind their choice
    assert counts["prepare_data"] == 1        # tuning and study share the seed-0 subset
    assert "results/tuned/tune/cells/full/toy/tiny-bert/lora/train.lr=10/k3_n120/s0/metrics.json" in before.stdout


def test_lr_10_diverges_and_is_never_chosen(tuned):
    work, _study, _before, proc = tuned
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    for method, lr in (("full", 3.0e-3), ("lora", 1.0e-2)):
        choice = json.loads((work / RESULTS / "tune" / "toy" / "tiny-bert" / f"{method}.json").read_text())
        assert choice["choice"] == {"train.lr": lr} and choice["healthy"], choice["candidates"]
        lr10 = next(c for c in choice["candidates"] if c["label"] == "train.lr=10")
        assert lr10["states"] == ["diverged"] and lr10["rank"] == 2
        cell = work / "results/tuned/tune/cells/full/toy/tiny-bert" / method / "train.lr=10/k3_n120/s0"
        metrics = json.loads((cell / "metrics.json").read_text())
        assert metrics["health"]["state"] == "diverged" and "test" not in metrics
        final = json.loads((work / RESULTS / "runs" / "toy" / "tiny-bert" / method / "k3_n120" / "s0"
                            / "metrics.json").read_text())
        assert final["tuned"] == {"train.lr": lr} and "test" in final


def test_the_report_shows_the_tuning(tuned):
    import pandas as pd

    work, _study, _before, _proc = tuned
    tables = work / RESULTS / "tables"
    tuning = pd.read_csv(tables / "tuning.csv")
    assert len(tuning) == 4 and tuning["chosen"].sum() == 2
    assert set(tuning.loc[~tuning["healthy"], "candidate"]) == {"train.lr=10"}
    assert "Test accuracy (%); tuned on validation: train.lr" in (tables / "study_accuracy.md").read_text()
    efficiency = (tables / "efficiency.md").read_text()
    assert "Tuning train time, total (s)" in efficiency and "Study train time, total (s)" in efficiency
    cells = pd.read_csv(tables / "cells.csv")
    assert set(cells["tuned"]) == {"train.lr=0.003", "train.lr=0.01"}
    assert set(cells["train_health"]) <= {"ok", "unchecked"}
    assert (work / RESULTS / "figures" / "tuning.png").stat().st_size > 1000


def test_a_rerun_after_a_finished_tuning_trains_nothing(tuned):
    work, study, _before, _proc = tuned
    proc = snakemake(work, "-n", configfiles=[study], env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_after_the_choice_new_seeds_are_study_cells_only(tuned):
    work, study, _before, _proc = tuned
    seeds = overlay(work, "seeds.yaml", "grid: {seeds: [0, 1]}\n")
    proc = snakemake(work, "-n", configfiles=[study, seeds], env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    assert counts["train"] == 2 and counts["prepare_data"] == 1   # seed 1 of full and lora
    assert "tune_train" not in counts and "tune_select" not in counts


def test_a_changed_choice_reruns_exactly_its_groups_cells(tuned):
    work, study, _before, _proc = tuned
    runs = work / RESULTS / "runs" / "toy" / "tiny-bert"
    lora_before = (runs / "lora" / "k3_n120" / "s0" / "metrics.json").stat().st_mtime_ns
    narrower = overlay(work, "full_lr.yaml", "tune: {methods: {full: {train.lr: [3.0e-2, 10.0]}}}\n")
    dry = snakemake(work, "-n", configfiles=[study, narrower], env=ENV)
    assert dry.returncode == 0, dry.stderr[-3000:]
    counts = job_counts(dry.stdout)
    # one new tuning cell (full at 3e-2; 10 is done), full's choice, full's study cell: lora untouched
    assert (counts["tune_train"], counts["tune_select"], counts["train"]) == (1, 1, 1)
    assert "cell=toy/tiny-bert/full/k3_n120/s0" in dry.stdout and "cell=toy/tiny-bert/lora/" not in dry.stdout
    proc = snakemake(work, "--cores", "2", configfiles=[study, narrower], env=ENV, timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    full = json.loads((runs / "full" / "k3_n120" / "s0" / "metrics.json").read_text())
    choice = json.loads((work / RESULTS / "tune" / "toy" / "tiny-bert" / "full.json").read_text())
    assert full["tuned"] == choice["choice"] == {"train.lr": 3.0e-2}
    assert (runs / "lora" / "k3_n120" / "s0" / "metrics.json").stat().st_mtime_ns == lora_before
    again = snakemake(work, "-n", configfiles=[study, narrower], env=ENV)
    assert "Nothing to be done" in again.stdout + again.stderr


def test_halving_dry_run_plans_the_first_rung_only(tiny_models, tmp_path):
    study = tuned_study(tmp_path, tiny_models, "{params: {train.lr: [1.0e-3, 1.0e-2, 3.0e-2, 10.0]}, "
                                               "halving: {eta: 2, rungs: 3}}", methods="[full]")
    proc = snakemake(tmp_path, "-n", configfiles=[study], env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    # rung 0: all 4 candidates on a quarter of the epochs; rung 1's 2 wait for rung 0's checkpoint
    assert counts["tune_train"] == 4 and counts["tune_rung"] == 1 and counts["tune_select"] == 1
    assert "results/tuned/tune/cells/1of4/toy/tiny-bert/full/train.lr=10/k3_n120/s0/metrics.json" in proc.stdout


@pytest.mark.slow
def test_halving_runs_rung_by_rung(tiny_models, tmp_path):
    """4 candidates, eta 2, 2 rungs: 4 cells on half the epochs, the best 2 on all of them."""
    study = tuned_study(tmp_path, tiny_models, "{params: {train.lr: [1.0e-3, 1.0e-2, 3.0e-2, 10.0]}, "
                                               "halving: {eta: 2, rungs: 2}}", methods="[full]")
    proc = snakemake(tmp_path, "--cores", "2", "results/tuned/runs/toy/tiny-bert/full/k3_n120/s0/metrics.json",
                     configfiles=[study], env=ENV, timeout=1800)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    tune = tmp_path / RESULTS / "tune" / "toy" / "tiny-bert"
    rung0 = json.loads((tune / "full.rung0.json").read_text())
    choice = json.loads((tune / "full.json").read_text())
    assert len(rung0["candidates"]) == 4 and len(rung0["kept"]) == 2 and rung0["budget"] == "1of2"
    assert {c["label"] for c in choice["candidates"]} == set(rung0["kept"])
    assert choice["choice_label"] in rung0["kept"] and choice["rungs"][0]["kept"] == rung0["kept"]
    halves = list((tmp_path / RESULTS / "tune" / "cells" / "1of2").rglob("metrics.json"))
    fulls = list((tmp_path / RESULTS / "tune" / "cells" / "full").rglob("metrics.json"))
    assert len(halves) == 4 and len(fulls) == 2
    half = json.loads(halves[0].read_text())["efficiency"]["optimizer_steps"]
    whole = json.loads(fulls[0].read_text())["efficiency"]["optimizer_steps"]
    assert half * 2 == whole  # restarted on half the epochs, not resumed
    total = choice["total_compute"]
    assert total["cells"] == 6 and total["full_search_steps"] == 4 * whole
    assert total["saved_share"] == pytest.approx(1 - (4 * half + 2 * whole) / (4 * whole), abs=1e-3)


def test_methods_tuned_study_dry_runs(tmp_path):
    """studies/methods_tuned.yaml: each method's lr list (its own for full, ia3, loraplus) on both
    label counts of seed 0, one choice per model x method, then the 180 study cells."""
    from emogrid.study.config import load_config
    from emogrid.study.tuning import Tuning
    from tests.helpers import REPO

    path = REPO / "studies" / "methods_tuned.yaml"
    tuning = Tuning(load_config([str(path)]), "results")  # a whole study (no config.yaml under it)
    per_model = 4 + 5 + 5 + 5 + 5 + 5   # full, lora, qlora, ia3, loraplus, dora
    assert len(tuning.tuned_groups()) == 5 * 6
    proc = snakemake(tmp_path, "-n", configfiles=[path], timeout=300, base=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = job_counts(proc.stdout)
    assert counts["tune_train"] == 5 * per_model * 2 and counts["tune_select"] == 5 * 6
    assert counts["train"] == 5 * 6 * 2 * 3
