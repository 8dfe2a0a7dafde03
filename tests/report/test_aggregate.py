"""emogrid aggregate on synthetic results trees with known values (tests/fixtures_results.py)."""

from __future__ import annotations

import json
import math

import fixtures_results as F
import pandas as pd
import pytest
from scipy.stats import t as student_t

from emogrid.cli import main
from emogrid.errors import EmogridError
from emogrid.report import aggregate as A

HALF_STD1 = F.T_975_DF2 * 0.01 / math.sqrt(3)


@pytest.fixture(scope="module")
def agg(tmp_path_factory):
    root = tmp_path_factory.mktemp("agg")
    F.build_tree(root / "runs", invalid=True)
    return A.aggregate(root / "runs", root / "tables") | {"root": root}


def _summary(agg, model, method, variant, k, n, metric="test_accuracy", dataset="goemotions"):
    s = agg["summary"]
    row = s[(s.dataset == dataset) & (s.model == model) & (s.method == method) & (s.variant == variant)
            & (s.labels == k) & (s.samples == n) & (s.metric == metric)]
    assert len(row) == 1, row
    return row.iloc[0]


def test_cells_one_tidy_row_per_cell(agg):
    cells = agg["cells"]
    # 2 models x 3 arms x 4 subsets x 3 seeds - 3 missing + 2 multi-label + 1 unreadable
    assert len(cells) == 72
    assert cells["cell_id"].is_unique
    assert cells["status"].value_counts().to_dict() == {"ok": 70, "failed": 1, "invalid": 1}
    for col in ["dataset", "model", "method", "variant", "labels", "samples", "seed", "lora.r",
                "val_accuracy", "test_accuracy", "test_f1_macro", "test_f1_weighted",
                "trainable_params", "train_seconds", "peak_memory_mb", "status", "error"]:
        assert col in cells.columns, col
    lora8 = cells[cells["variant"] == "lora.r=8"]
    assert set(lora8["lora.r"].dropna()) == {8} and str(cells["lora.r"].dtype) == "Int64"
    assert cells.loc[cells["method"] == "full", "lora.r"].isna().all()
    failed = cells[cells["status"] == "failed"].iloc[0]
    assert failed["cell_id"] == "goemotions/tiny-a/lora/lora.r=8/k4_n100/s2"
    assert failed["error_type"] == "OutOfMemoryError" and "out of memory" in failed["error"]
    assert failed["hint"].startswith("lower train.batch_size")
    ml = cells[cells["dataset"] == "goemotions-ml"]
    assert set(ml["mode"]) == {"multi"} and ml["test_f1_micro"].notna().all()
    invalid = cells[cells["status"] == "invalid"].iloc[0]
    assert invalid["model"] == "tiny-c" and "JSONDecodeError" in invalid["error"]
    # the written files round-trip
    root = agg["root"] / "tables"
    assert len(pd.read_csv(root / "cells.csv")) == 72
    assert len(pd.read_parquet(root / "cells.parquet")) == 72


def test_seed_summary_exact(agg):
    row = _summary(agg, "tiny-a", "full", "", 2, 100)
    assert row["mean"] == pytest.approx(0.50, abs=1e-12)
    assert row["std"] == pytest.approx(0.01, abs=1e-12)
    assert row["n"] == 3 and row["n_failed"] == 0
    assert row["ci95_t_half"] == pytest.approx(HALF_STD1, rel=1e-9)
    assert row["ci95_t_low"] == pytest.approx(0.50 - HALF_STD1, rel=1e-9)
    assert "Student t" in row["ci_method"]
    # lora r=8 spreads twice as much over seeds
    row = _summary(agg, "tiny-b", "lora", "lora.r=8", 4, 200)
    assert row["mean"] == pytest.approx(0.50 + 0.05 + 0.04 + 0.03 - 0.04, abs=1e-12)
    assert row["std"] == pytest.approx(0.02, abs=1e-12)
    assert row["ci95_t_half"] == pytest.approx(2 * HALF_STD1, rel=1e-9)
    # the failed seed: two seeds left (offsets -0.02, 0), one failure counted
    row = _summary(agg, "tiny-a", "lora", "lora.r=8", 4, 100)
    assert row["n"] == 2 and row["n_failed"] == 1
    assert row["mean"] == pytest.approx(F.mean_acc("tiny-a", 2, 4, 100) - 0.01, abs=1e-12)
    assert row["std"] == pytest.approx(0.02 / math.sqrt(2), rel=1e-9)
    assert row["ci95_t_half"] == pytest.approx(F.T_975_DF1 * 0.01, rel=1e-9)
    # macro-F1 and efficiency columns are summarised too
    assert _summary(agg, "tiny-a", "full", "", 2, 100, "test_f1_macro")["mean"] == pytest.approx(0.40)
    assert _summary(agg, "tiny-a", "full", "", 2, 200, "train_seconds")["mean"] == pytest.approx(40.0)
    # the missing cell has no summary row
    s = agg["summary"]
    assert s[(s.model == "tiny-b") & (s.method == "full") & (s.labels == 4) & (s.samples == 200)].empty


def test_paired_comparison_exact(agg):
    c = agg["comparisons"]
    sel = c[(c.scope == "subset") & (c.question == "reference") & (c.model == "tiny-a") & (c.labels == 2)
            & (c.samples == 100) & (c.metric == "test_accuracy") & (c.variant_a == "lora.r=8")]
    assert len(sel) == 1
    row = sel.iloc[0]
    # each arm vs the reference arm (full): per seed lora8 - full = 0.04 + offset -> 0.03, 0.04, 0.05
    assert (row["method_b"], row["variant_b"], row["model_b"]) == ("full", "", "tiny-a")
    assert row["n_pairs"] == 3
    assert row["diff_mean"] == pytest.approx(0.04, abs=1e-12)
    assert row["diff_std"] == pytest.approx(0.01, abs=1e-12)
    assert row["ci95_t_high"] == pytest.approx(0.04 + HALF_STD1, rel=1e-9)
    t_stat = 0.04 / (0.01 / math.sqrt(3))
    assert row["t_stat"] == pytest.approx(t_stat, rel=1e-9)
    assert row["p_value"] == pytest.approx(2 * student_t.sf(abs(t_stat), 2), rel=1e-6)
    assert (row["wins_a"], row["wins_b"]) == (3, 0)
    assert row["claim"] == "methods (over seeds)" and row["correction"] == "holm"
    # pooled over the whole study: lora r=8 vs full on every matched (model, k, n, seed)
    study = c[(c.scope == "study") & (c.dataset == "goemotions") & (c.metric == "test_accuracy")
              & (c.variant_a == "lora.r=8") & (c.method_b == "full")].iloc[0]
    assert study["n_pairs"] == 2 * 4 * 3 - 1 - 3  # one failed seed, one missing full cell (3 seeds)
    assert study["diff_mean"] == pytest.approx(0.04 - 0.01 / 20)
    # ... but its 20 pairs share test sets (pseudo-replication): no pooled interval or p-value
    assert math.isnan(study["ci95_t_high"]) and math.isnan(study["p_value"]) and study["n_units"] == 1
    assert "not independent" in study["note"]
    # the missing cell (tiny-b full k4 n200) leaves no pairs there
    miss = c[(c.scope == "subset") & (c.model == "tiny-b") & (c.labels == 4) & (c.samples == 200)
             & (c.method_a == "full")]
    assert miss.empty


def test_pending_rows_and_config_order(tmp_path):
    F.build_tree(tmp_path / "runs", multi=False)
    expected = list(reversed(F.expected_grid()))  # order comes from the expected grid
    result = A.aggregate(tmp_path / "runs", tmp_path / "tables", expected=expected)
    cells = result["cells"]
    pending = cells[cells["status"] == "pending"]
    assert len(pending) == 3 and set(pending["model"]) == {"tiny-b"}
    assert set(pending["variant"]) == {""} and set(pending["samples"]) == {200}
    assert cells["in_grid"].all()
    levels = json.loads((tmp_path / "tables" / "levels.json").read_text())
    assert levels["model"] == ["tiny-b", "tiny-a"] and levels["from_config"] is True
    assert levels["samples"] == [100, 200]


def test_empty_tree_is_a_clear_error(tmp_path):
    (tmp_path / "runs").mkdir()
    with pytest.raises(EmogridError, match="no results under"):
        A.aggregate(tmp_path / "runs", tmp_path / "tables")
    assert main(["aggregate", "--runs", str(tmp_path / "nowhere"), "--out", str(tmp_path / "t")]) == 2


def test_only_failures_and_mixed_versions(tmp_path):
    runs = tmp_path / "runs"
    F.write_cell(runs, "goemotions", "tiny-a", "full", "", {}, 2, 100, 0, 0.5, failed=True)
    # a newer writer: an extra metric and an extra top-level field become columns / are ignored
    F.write_cell(runs, "goemotions", "tiny-b", "lora", "", {}, 2, 100, 0, 0.7)
    newer = runs / "goemotions/tiny-b/lora/k2_n100/s0/metrics.json"
    obj = json.loads(newer.read_text())
    obj["test"]["new_metric"] = 3
    obj["schema"] = 2
    newer.write_text(json.dumps(obj))
    # an older writer without the contract's blocks is not tabled: it is invalid, with the reason
    old = runs / "goemotions/tiny-a/lora/k2_n100/s0/metrics.json"
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({"status": "ok", "test": {"accuracy": 0.7, "f1_macro": [1, 2], "new_metric": 3},
                               "schema": 0}))
    result = A.aggregate(runs, tmp_path / "tables")
    cells = result["cells"].set_index("cell_id")
    row = cells.loc["goemotions/tiny-b/lora/k2_n100/s0"]
    assert row["status"] == "ok" and row["model"] == "tiny-b" and row["labels"] == 2
    assert row["test_accuracy"] == 0.7 and row["test_new_metric"] == 3
    row = cells.loc["goemotions/tiny-a/lora/k2_n100/s0"]
    assert row["status"] == "invalid" and row["model"] == "tiny-a" and row["labels"] == 2
    assert str(old) in row["error"] and "(top level): missing keys 'cell', 'cell_id'" in row["error"]
    assert "test.f1_macro: expected number" in row["error"]
    assert cells.loc["goemotions/tiny-a/full/k2_n100/s0", "status"] == "failed"
    # failure-only tree (no ok cell) still writes every table
    only_failed = tmp_path / "failed_runs"
    F.write_cell(only_failed, "goemotions", "tiny-a", "full", "", {}, 2, 100, 0, 0.5, failed=True)
    result = A.aggregate(only_failed, tmp_path / "t2")
    assert result["summary"].empty and result["comparisons"].empty
    assert "failed" in (tmp_path / "t2" / "problems.md").read_text().lower()


def test_cli(tmp_path, capsys):
    F.build_tree(tmp_path / "runs")
    assert main(["aggregate", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "tables")]) == 0
    out = capsys.readouterr().out
    assert "71 cells (70 ok, 1 failed)" in out


def test_aggregate_1080_cells(tmp_path):
    # its speed is measured in bench/orchestration.py (emogrid aggregate over 1,080 cells), not asserted
    assert F.build_big_tree(tmp_path / "runs") == 1080
    result = A.aggregate(tmp_path / "runs", tmp_path / "tables")
    assert len(result["cells"]) == 1080
    assert (result["cells"]["status"] == "ok").all()
