"""`emogrid.open_study`: a synthetic results tree (fixtures_results) read through the Python API."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import fixtures_results as F
import numpy as np
import pandas as pd
import pytest

import emogrid
from emogrid.errors import EmogridError
from emogrid.report.aggregate import aggregate

MISSING_ID = F.cell_id("goemotions", "tiny-b", "full", "", 4, 200, 0)
FAILED_ID = F.cell_id("goemotions", "tiny-a", "lora", "lora.r=8", 4, 100, 2)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """The synthetic study, aggregated with its grid (pending rows), plus one scored cell."""
    root = tmp_path_factory.mktemp("study")
    F.build_tree(root / "runs")
    rng = np.random.default_rng(3)
    gold = {"val": np.array([0, 1] * 10), "test": np.array([0, 1, 1] * 20)}
    F.write_scored_cell(root / "runs", "goemotions", "scored", "lora", 2, 100, 0, gold,
                        {s: F.scored_predictions(g, 0.8, rng) for s, g in gold.items()})
    aggregate(root / "runs", root / "tables", expected=F.expected_grid())
    return root


def test_frames_have_the_tables_columns_and_values(tree):
    study = emogrid.open_study(tree)
    assert study.source == "tables"
    cells = study.cells
    assert list(cells.columns[:8]) == ["cell_id", "dataset", "model", "method", "variant", "labels", "samples",
                                       "seed"]
    assert {"status", "test_accuracy", "test_accuracy_ci95_low", "train_seconds", "lora.r"} <= set(cells.columns)
    assert cells.set_index("cell_id").loc[MISSING_ID, "status"] == "pending"
    assert cells.set_index("cell_id").loc[FAILED_ID, "status"] == "failed"
    # the mean over three seeds is the fixture's formula (the seed offsets cancel)
    s = study.summary
    row = s[(s.model == "tiny-b") & (s.method == "lora") & (s.variant == "lora.r=4") & (s.labels == 2)
            & (s.samples == 200) & (s.metric == "test_accuracy")].iloc[0]
    assert row["mean"] == pytest.approx(F.mean_acc("tiny-b", 1, 2, 200)) and row["n"] == 3
    assert {"ci95_t_low", "ci95_boot_low", "did_not_learn"} <= set(s.columns)
    c = study.comparisons
    assert {"scope", "method_a", "variant_a", "diff_mean", "p_adj", "significant"} <= set(c.columns)
    assert (c.loc[c.method_a == "full", "variant_a"] == "").all()  # "" survives the CSV round trip
    assert list(study.replication.columns)[:9] == ["study", "dataset", "model", "method", "labels", "samples",
                                                   "split", "metric", "value"]
    assert study.replication.empty  # the study sets no report.reference
    assert study.levels["model"] == ["tiny-a", "tiny-b", "scored"]  # grid order, then cells outside it
    assert cells["labels"].dtype == "Int64" and study.per_class["lora.r"].dtype == "Int64"


def test_recomputed_frames_equal_the_tables(tmp_path):
    F.build_tree(tmp_path / "runs")
    aggregate(tmp_path / "runs", tmp_path / "tables")
    from_tables, from_runs = emogrid.open_study(tmp_path), emogrid.open_study(tmp_path, recompute=True)
    assert from_runs.source == "runs"
    for name in ("cells", "summary", "comparisons", "replication", "per_class"):
        a, b = getattr(from_tables, name), getattr(from_runs, name)
        assert list(a.columns) == list(b.columns), name
        pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=False, obj=name)


def test_predictions_of_one_cell(tree):
    study = emogrid.open_study(tree)
    cid = F.cell_id("goemotions", "scored", "lora", "", 2, 100, 0)
    row = study.cells.set_index("cell_id").loc[cid]
    preds = study.predictions(cid, split="test")
    assert list(preds.columns) == ["cell_id", "id", "split", "gold", "pred", "gold_label", "pred_label", "correct",
                                   "p_admiration", "p_gratitude"]
    assert len(preds) == 60 and set(preds["split"]) == {"test"}
    assert preds["correct"].mean() == pytest.approx(row["test_accuracy"])
    assert (preds["gold_label"] == preds["gold"].map({0: "admiration", 1: "gratitude"})).all()
    assert (preds["p_gratitude"] == (preds["pred"] == 1).astype(float)).all()
    both = study.predictions(study.cells[study.cells.cell_id == cid].iloc[0])  # a row works too
    assert set(both["split"]) == {"val", "test"} and len(both) == 80
    with pytest.raises(EmogridError, match="predictions.jsonl: no predictions"):
        study.predictions(FAILED_ID)


def test_status_reads_the_files_now(tree):
    study = emogrid.open_study(tree)
    status = study.status
    assert status.counts["done"] == 68 and status.counts["failed"] == 1 and status.counts["pending"] == 3
    assert status.counts["total"] == 72 and len(status.outside_grid) == 3  # multi-label cells + scored
    assert status.stale == []
    assert set(status.cells.columns) == {"cell_id", "status", "error", "did_not_learn"}
    text = str(status)
    assert text.startswith("68/72 done") and "lora (" not in text.splitlines()[0]


def test_a_result_newer_than_the_tables_is_reported(tmp_path):
    F.build_tree(tmp_path / "runs", multi=False)
    aggregate(tmp_path / "runs", tmp_path / "tables")
    cid = F.cell_id("goemotions", "tiny-a", "full", "", 2, 100, 0)
    later = (tmp_path / "tables" / "cells.parquet").stat().st_mtime + 10
    os.utime(tmp_path / "runs" / cid / "metrics.json", (later, later))
    with pytest.warns(UserWarning, match="1 cell\\(s\\) changed after the tables were written"):
        study = emogrid.open_study(tmp_path)
    assert study.status.stale == [cid] and "changed after the tables" in str(study.status)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emogrid.open_study(tmp_path, recompute=True)  # computed from the files: nothing stale


def test_open_study_errors_and_light_import(tmp_path):
    with pytest.raises(EmogridError, match="neither tables/cells.parquet nor runs/"):
        emogrid.open_study(tmp_path)
    code = ("import sys, emogrid; assert 'pandas' not in sys.modules; f = emogrid.open_study; "
            "assert 'pandas' in sys.modules; print(f.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "emogrid.report.study_results"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        emogrid.nope  # noqa: B018
