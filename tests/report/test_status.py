"""emogrid status: states per cell, grouped grid view within 80 columns, --json."""

from __future__ import annotations

import json

import fixtures_results as F
import pytest

from emogrid.cli import main
from emogrid.report import status as S
from emogrid.results import collect as C
from emogrid.training import cell_files as R


@pytest.fixture()
def results(tmp_path):
    F.build_tree(tmp_path / "runs", multi=True)
    # one missing seed is training: a checkpoint folder, held by a live process (this one)
    run_dir = tmp_path / "runs" / F.cell_id("goemotions", "tiny-b", "full", "", 4, 200, 0)
    (run_dir / ".checkpoint").mkdir(parents=True)
    R.claim(run_dir)
    return tmp_path


def test_counts_and_states(results):
    st = S.grid_status(results, F.expected_grid())
    assert st["counts"] == {"done": 68, "invalid": 0, "failed": 1, "running": 1, "interrupted": 0,
                            "pending": 2, "total": 72}
    failed = [c for c in st["cells"] if c["status"] == "failed"]
    assert failed[0]["error"]["type"] == "OutOfMemoryError"
    assert len(st["outside_grid"]) == 2  # the multi-label cells are not in this grid


def test_render_fits_80_columns(results):
    text = S.render(S.grid_status(results, F.expected_grid()), width=80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0].startswith("68/72 done (94%) · 1 failed · 1 running · 2 pending")
    assert "lora: 47/48 done, 1 failed" in text
    assert "tiny-a r=8 ●●●   ●●●   ●●✗   ●●●" in text
    assert "tiny-b ●●●   ●●●   ●●●   ◐··" in text
    assert "hint: lower train.batch_size" in text
    ascii_text = S.render(S.grid_status(results, F.expected_grid()), ascii_only=True)
    assert ascii_text.isascii() and "##x" in ascii_text


def test_wide_grid_is_split_into_chunks(tmp_path):
    expected = [{"cell_id": F.cell_id("d", "a-rather-long-model-name", "lora", "", k, n, 0), "dataset": "d",
                 "model": "a-rather-long-model-name", "method": "lora", "labels": k, "samples": n, "seed": 0}
                for k in (2, 4, 8, 16) for n in (800, 1600, 2400, 3200)]
    text = S.render(S.grid_status(tmp_path, expected), width=60)
    assert max(len(line) for line in text.splitlines()) <= 60
    assert text.count("k=16") == 1 and text.count("n=3200") == 4


def test_cli_json(results, monkeypatch, capsys):
    monkeypatch.setattr(C, "expected_cells", lambda configfiles=(), config=None, results=None: F.expected_grid())
    assert main(["status", "--results", str(results), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["done"] == 68 and len(data["cells"]) == 72
    assert main(["status", "--results", str(results), "--ascii", "--width", "80"]) == 0
    assert "68/72 done" in capsys.readouterr().out


def test_real_config(tmp_path, capsys):
    """Against the grid layer: the quickstart study expands to 4 pending cells."""
    assert main(["status", "--configfile", "studies/quickstart.yaml", "--results", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["pending"] == data["counts"]["total"] > 0


def test_chance_level_cell_is_flagged_did_not_learn(tmp_path):
    import numpy as np

    gold = np.array([0] * 150 + [1] * 50)  # majority class: 75%
    val = np.array([0, 1] * 10)
    expected = []
    for model, pred in (("stuck", np.zeros_like(gold)), ("learns", gold.copy())):
        cid = F.write_scored_cell(tmp_path / "runs", "goemotions", model, "lora", 2, 100, 0,
                                  {"val": val, "test": gold}, {"val": val, "test": pred})
        expected.append({"cell_id": cid, "dataset": "goemotions", "model": model, "method": "lora",
                         "labels": 2, "samples": 100, "seed": 0})
    st = S.grid_status(tmp_path, expected)
    assert st["did_not_learn"] == [expected[0]["cell_id"]]
    learning = {c["axes"]["model"]: c["learning"] for c in st["cells"]}
    assert learning["stuck"]["majority"] == pytest.approx(0.75) and learning["stuck"]["accuracy"] == pytest.approx(0.75)
    assert not learning["learns"]["did_not_learn"]
    text = S.render(st)
    assert "did not learn (1)" in text and "goemotions/stuck/lora/k2_n100/s0: accuracy 75.0%" in text


def test_a_cell_that_never_trained_is_shown_apart_from_done(results):
    """Training health (emogrid.training.health): finished, but its loss never fell: its own
    symbol and list, still counted as done; a NaN-loss failure is listed as diverged too."""
    done = next(c for c in S.grid_status(results, F.expected_grid())["cells"] if c["status"] == "done")
    path = results / "runs" / done["cell_id"] / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["health"] = {"state": "did_not_train", "reason": "training loss never fell 2% below its starting 1.386"}
    path.write_text(json.dumps(metrics))
    st = S.grid_status(results, F.expected_grid())
    assert st["did_not_train"] == [done["cell_id"]] and st["counts"]["done"] == 68
    text = S.render(st, width=100)
    assert "⊘ did not train" in text.splitlines()[1]
    assert "⊘ diverged or did not train (1)" in text
    assert f"{done['cell_id']}: did not train: training loss never fell 2%" in text
    assert S.render(st, width=100, ascii_only=True).isascii()
