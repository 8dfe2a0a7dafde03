"""Fault suite, result files: every bad metrics.json / failure.json a crash, a copy or a hand
edit can leave is *invalid* — never tabled, never counted as done, named with its file and
key in status, problems.md and on the console, and moved aside so the next run retrains it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import fixtures_results as F
import pytest

from emogrid.cli import main
from emogrid.report import aggregate as A
from emogrid.report import status as S
from emogrid.results.collect import collect
from emogrid.results.summary import summarize
from emogrid.study.grid import Cell
from emogrid.training import cell_files as R

K2 = F.cell_id("goemotions", "tiny-a", "full", "", 2, 100, 0)
K4 = F.cell_id("goemotions", "tiny-a", "full", "", 4, 100, 0)


def _edit(path: Path, fn) -> None:
    obj = json.loads(path.read_text())
    fn(obj)
    path.write_text(json.dumps(obj))


def _copy_k4(runs: Path) -> None:
    (runs / K2 / "metrics.json").write_text((runs / K4 / "metrics.json").read_text())


def _truncate(runs: Path) -> None:
    path = runs / K2 / "metrics.json"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


# (name, how to damage the k2 cell's metrics.json, what the reason must say)
BAD = [
    ("empty object", lambda runs: (runs / K2 / "metrics.json").write_text("{}"),
     "(top level): missing keys 'cell', 'cell_id', 'status', 'val', 'test', 'efficiency', 'provenance'"),
    ("empty file", lambda runs: (runs / K2 / "metrics.json").write_text(""), "empty file"),
    ("truncated", _truncate, "not valid JSON"),
    ("copied from k4", _copy_k4, f"the file records cell '{K4}' but lives in the folder of '{K2}'"),
    ("string accuracy", lambda runs: _edit(runs / K2 / "metrics.json",
                                           lambda m: m["test"].update(accuracy="0.86")),
     "test.accuracy: expected number, got str \"0.86\""),
    ("accuracy 1.5", lambda runs: _edit(runs / K2 / "metrics.json", lambda m: m["test"].update(accuracy=1.5)),
     "test.accuracy: expected a value <= 1, got 1.5"),
    ("negative params", lambda runs: _edit(runs / K2 / "metrics.json",
                                           lambda m: m["efficiency"].update(trainable_params=-1)),
     "efficiency.trainable_params: expected a value >= 0, got -1"),
    ("status failed in metrics", lambda runs: _edit(runs / K2 / "metrics.json", lambda m: m.update(status="failed")),
     "status: expected 'ok', got 'failed'"),
    ("a JSON list", lambda runs: (runs / K2 / "metrics.json").write_text("[1, 2]"), "expected a JSON object"),
    ("failure.json without error", lambda runs: (
        (runs / K2 / "metrics.json").unlink(),
        (runs / K2 / "failure.json").write_text(json.dumps({"cell_id": K2, "status": "failed"}))),
     "missing key 'error'"),
]


@pytest.fixture()
def runs(tmp_path):
    F.build_tree(tmp_path / "runs")
    return tmp_path / "runs"


@pytest.mark.parametrize("name, damage, reason", BAD, ids=[b[0] for b in BAD])
def test_bad_result_is_invalid_everywhere(runs, tmp_path, name, damage, reason, capsys):
    good = A.aggregate(runs, tmp_path / "before")["cells"].set_index("cell_id")
    assert good.loc[K2, "status"] == "ok"
    damage(runs)
    bad_file = runs / K2 / ("failure.json" if name.startswith("failure") else "metrics.json")

    # aggregate: not tabled, no crash, file and reason in the row and in problems.md
    assert main(["aggregate", "--runs", str(runs), "--out", str(tmp_path / "tables")]) == 0
    out = capsys.readouterr()
    cells = collect(runs)[0].set_index("cell_id")
    assert cells.loc[K2, "status"] == "invalid"
    assert pd_isna(cells.loc[K2].get("test_accuracy"))
    assert str(bad_file) in cells.loc[K2, "error"] and reason in cells.loc[K2, "error"]
    problems = (tmp_path / "tables" / "problems.md").read_text()
    assert K2 in problems and reason in problems
    assert "## Invalid result files (not tabled; the next snakemake run trains them again): 1" in problems
    assert "1 invalid" in out.out and str(bad_file) in out.err and reason in out.err
    # the summary over seeds never sees it: k2 / n100 of tiny-a full has 2 seeds, not 3
    summary = summarize(cells.reset_index())
    row = summary[(summary["model"] == "tiny-a") & (summary["method"] == "full") & (summary["labels"] == 2)
                  & (summary["samples"] == 100) & (summary["metric"] == "test_accuracy")]
    assert int(row["n"].iloc[0]) == 2

    # status: its own state with the reason, never "done"
    st = S.grid_status(runs.parent, F.expected_grid())
    entry = next(c for c in st["cells"] if c["cell_id"] == K2)
    assert entry["status"] == "invalid" and reason in entry["error"]["message"]
    assert entry["error"]["file"] == str(bad_file)
    assert st["counts"]["invalid"] == 1
    text = S.render(st, width=100)
    assert "1 invalid" in text and K2 in text


def pd_isna(value) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def test_config_hash_of_another_spec_is_invalid(runs, tmp_path):
    expected = F.expected_grid()
    for cell in expected:
        cell["config_hash"] = "abc"  # what the fixture files record
    next(c for c in expected if c["cell_id"] == K2)["config_hash"] = "f" * 64
    cells = collect(runs, expected)[0].set_index("cell_id")
    assert cells.loc[K2, "status"] == "invalid" and "not the current spec's ffffffffffff" in cells.loc[K2, "error"]
    assert (cells["status"] == "ok").sum() == 69  # all the others still match
    assert S.grid_status(runs.parent, expected)["counts"]["invalid"] == 1


def test_reconcile_moves_invalid_results_aside_and_keeps_valid_ones(runs, tmp_path):
    """What the workflow does before planning: the invalid file leaves Snakemake's way (kept
    as metrics.json.invalid), so the cell is trained again; valid ones stay untouched."""
    _copy_k4(runs)
    cells = [Cell(cell_id=K2, axes={}, spec={"config_hash": "abc"}),
             Cell(cell_id=K4, axes={}, spec={"config_hash": "abc"})]
    k4_bytes = (runs / K4 / "metrics.json").read_bytes()
    notes = R.reconcile(cells, runs.parent, snakemake_dir=tmp_path / ".snakemake")
    assert len(notes) == 1 and K2 in notes[0] and "trained again" in notes[0]
    assert not (runs / K2 / "metrics.json").exists()
    assert (runs / K2 / "metrics.json.invalid").read_bytes() == k4_bytes
    assert (runs / K4 / "metrics.json").read_bytes() == k4_bytes


def test_interrupted_vs_running(tmp_path):
    run_dir = tmp_path / "cell"
    (run_dir / ".checkpoint").mkdir(parents=True)
    assert S.cell_state(run_dir)[0] == "interrupted"          # a checkpoint nobody holds
    R.claim(run_dir)
    assert S.cell_state(run_dir)[0] == "running"              # held by a live process (this one)
    owner = json.loads((run_dir / R.OWNER_FILE).read_text())
    owner["create_time"] -= 1000                              # that pid, but another process now
    (run_dir / R.OWNER_FILE).write_text(json.dumps(owner))
    assert S.cell_state(run_dir)[0] == "interrupted"
    # a claim from a cluster node: alive while its heartbeat is fresh
    owner["hostname"] = "node-17.cluster"
    (run_dir / R.OWNER_FILE).write_text(json.dumps(owner))
    assert S.cell_state(run_dir)[0] == "running"
    stale = time.time() - R.STALE_SECONDS - 1
    os.utime(run_dir / R.OWNER_FILE, (stale, stale))
    assert S.cell_state(run_dir)[0] == "interrupted"
    R.release(run_dir)
    assert S.cell_state(run_dir)[0] == "interrupted"
    (run_dir / ".checkpoint").rmdir()
    assert S.cell_state(run_dir)[0] == "pending"


def test_claim_heartbeat_keeps_it_fresh_until_released(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "HEARTBEAT_SECONDS", 0.05)
    path = R.claim(tmp_path)
    old = time.time() - 1000
    os.utime(path, (old, old))
    deadline = time.monotonic() + 30
    while path.stat().st_mtime <= old + 1:          # the heartbeat thread touches it
        assert time.monotonic() < deadline
        time.sleep(0.05)
    R.release(tmp_path)
    # this claim's heartbeat is gone (other tests of the session may hold claims of their own)
    assert not path.exists() and str(path) not in R._heartbeats


def test_status_results_that_do_not_exist_is_an_error(tmp_path, capsys):
    assert main(["status", "--results", str(tmp_path / "resluts")]) == 2
    err = capsys.readouterr().err
    assert "--results" in err and "resluts: no such directory" in err


def test_status_takes_several_configfiles_after_one_flag(tmp_path, capsys):
    extra = tmp_path / "seeds.yaml"
    extra.write_text("grid: {seeds: [0, 1]}\n")
    assert main(["status", "--results", str(tmp_path), "--json",
                 "--configfile", "studies/quickstart.yaml", str(extra)]) == 0
    two = json.loads(capsys.readouterr().out)["counts"]["total"]
    assert main(["status", "--results", str(tmp_path), "--json", "--configfile", "studies/quickstart.yaml"]) == 0
    one = json.loads(capsys.readouterr().out)["counts"]["total"]
    assert two == 2 * one > 0


def test_confusion_figure_of_an_invalid_cell_names_file_and_key(runs, tmp_path, capsys):
    _edit(runs / K2 / "metrics.json", lambda m: m["test"].update(accuracy="0.86"))
    A.aggregate(runs, tmp_path / "tables")
    assert main(["figures", "--tables", str(tmp_path / "tables"), "--out", str(tmp_path / "fig"),
                 "--runs", str(runs), "--confusion", K2]) == 2
    err = capsys.readouterr().err
    assert str(runs / K2 / "metrics.json") in err and "test.accuracy: expected number" in err


def test_reconcile_leaves_results_of_an_edited_config_to_snakemake(runs, tmp_path):
    """A dry run after editing the config must not move results away: a valid file of other
    settings stays (Snakemake's params trigger reruns the cell when it really runs)."""
    cells = [Cell(cell_id=K2, axes={}, spec={"config_hash": "f" * 64})]
    before = (runs / K2 / "metrics.json").read_bytes()
    assert R.reconcile(cells, runs.parent, snakemake_dir=tmp_path / ".snakemake") == []
    assert (runs / K2 / "metrics.json").read_bytes() == before


def test_failed_aggregation_leaves_the_previous_tables(runs, tmp_path, monkeypatch):
    from emogrid.report import tables as T

    out = tmp_path / "tables"
    A.aggregate(runs, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "cells.csv" in before and "study_accuracy.md" in before
    F.write_cell(runs, "goemotions", "tiny-c", "full", "", {}, 2, 100, 0, 0.9)  # something new

    def boom(*args, **kwargs):
        raise RuntimeError("disk full while writing a table")

    monkeypatch.setattr(T, "write_tables", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        A.aggregate(runs, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before   # cells.csv too: no half-update
    assert not list(tmp_path.glob(".tables.staging-*"))


def test_failed_figures_leave_the_previous_figures(runs, tmp_path, monkeypatch):
    from emogrid.report import plots as P
    from emogrid.report.figures import per_class

    A.aggregate(runs, tmp_path / "tables")
    out = tmp_path / "figures"
    P.make_figures(tmp_path / "tables", out, formats=("png",))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "study_heatmap.png" in before

    def boom(*args, **kwargs):
        raise RuntimeError("a plotting bug")

    monkeypatch.setattr(per_class, "per_class_f1", boom)
    with pytest.raises(RuntimeError, match="plotting bug"):
        P.make_figures(tmp_path / "tables", out, formats=("png",))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("targets, ok", [("bogus_module", False), ("q_proj,bogus", False),
                                         ("q_proj,v_proj", True), ("qv", True)])
def test_target_modules_checked_before_scheduling(tiny_models, tmp_path, capsys, targets, ok):
    """lora.targets against the model's structure (meta device, its config.json, no weights):
    `emogrid grid` and the Snakefile stop before any job with the key, model and what exists."""
    from tests.helpers import REPO, snakemake

    study = tmp_path / "study.yaml"
    study.write_text(f"grid: {{labels: [2], samples: [60], models: [tiny], methods: [lora, full]}}\n"
                     f"models: {{tiny: {{path: {tiny_models['llama']}}}}}\n"
                     f"lora: {{targets: '{targets}'}}\n")
    rc = main(["grid", "--configfile", str(REPO / "config.yaml"), str(study)])
    err = capsys.readouterr().err
    if ok:
        assert rc == 0, err
        return
    assert rc == 2 and "Traceback" not in err
    assert f"lora.targets '{targets}' for model 'tiny' (llama" in err and "'bogus" in err
    proc = snakemake(tmp_path, "-n", configfiles=[study])
    assert proc.returncode == 2 and f"lora.targets '{targets}' for model 'tiny'" in proc.stderr


@pytest.mark.parametrize("damage, reason", [
    (lambda d: (d / "train.jsonl").write_text((d / "train.jsonl").read_text()[:-30] + "\n"), "not valid JSON"),
    (lambda d: (d / "val.jsonl").write_text('{"text": "hi", "labels": [7]}\n'), "outside the manifest's"),
    (lambda d: (d / "test.jsonl").write_text('{"text": 3, "labels": [0]}\n'), "expected {\"text\": str"),
    (lambda d: (d / "manifest.json").write_text('{"labels": "joy"}'), "expected a 'labels' list"),
], ids=["truncated", "label-out-of-range", "text-not-string", "manifest"])
def test_damaged_subset_fails_the_cell_naming_file_and_line(tiny_models, tiny_subset, tmp_path, damage, reason):
    """A damaged results/data subset: the cell fails at once, not retryable, with the file (and
    line) and what to do; nothing is trained on it."""
    import argparse
    import shutil

    from conftest_train import cell_spec

    from emogrid.training import train

    data = tmp_path / "data"
    shutil.copytree(tiny_subset, data)
    damage(data)
    out = tmp_path / "run"
    spec = cell_spec(tiny_models["bert"], "lora", epochs=1)
    rc = train.run(argparse.Namespace(spec=json.dumps(spec), data=str(data), out=str(out), attempt=1,
                                      fetched="", processes=1))
    assert rc == 2
    error = json.loads((out / "failure.json").read_text())["error"]
    assert error["type"] == "DataError" and reason in error["message"] and str(data) in error["message"]
    assert error["retryable"] is False and "rebuilds it" in error["hint"]
    assert not (out / "metrics.json").exists()
