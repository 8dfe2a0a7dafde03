"""Every paper's study file validates, expands to its datasets and dry-runs (`snakemake -n`)."""

from __future__ import annotations

import pytest

from emogrid.config import load_config
from emogrid.grid import expand_cells
from tests.helpers import REPO, job_counts, snakemake

PAPERS = {
    "motaharfar_goemotions_grid.yaml": ({"goemotions"}, 180),
    "xu_distilbert_imdb_agnews.yaml": ({"imdb", "ag_news"}, 54),
    "vinayaka_emotion_multilabel.yaml": ({"sem_eval_2018_ec"}, 18),
    "patil_llama3_sentiment5.yaml": ({"yelp_review_full"}, 144),
    "nishat_llama3_emotion6.yaml": ({"emotion"}, 6),
}


@pytest.mark.parametrize("study", sorted(PAPERS))
def test_paper_study_expands_and_dry_runs(study, tmp_path):
    path = REPO / "studies" / study
    header = path.read_text().split("\n\n", 1)[0]
    assert header.startswith("# Reproduces: ") and "Known differences:" in header
    datasets, n_cells = PAPERS[study]
    cells = expand_cells(load_config([str(path)], base=REPO / "config.yaml"))
    assert {c.axes["dataset"] for c in cells} == datasets and len(cells) == n_cells
    if study.startswith("xu_"):  # labels: all -> 2 for IMDB, 4 for AG News
        assert {(c.axes["dataset"], c.axes["labels"]) for c in cells} == {("imdb", 2), ("ag_news", 4)}
    proc = snakemake(tmp_path, "-n", "--cores", "1", configfiles=[path], timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = job_counts(proc.stdout)
    assert counts["train"] == n_cells
    assert counts["prepare_data"] == len({(c.axes["dataset"], c.axes["labels"], c.axes["samples"], c.axes["seed"])
                                          for c in cells})
