"""`emogrid tune-select` (emogrid.results.tune_select): the candidates of one tuning group
ranked on validation: the best mean score wins, ties go to the candidate listed first, a
diverged, untrained or failed candidate loses; a halving rung keeps ceil(n/eta)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emogrid.errors import EmogridError
from emogrid.study.config import finalize
from emogrid.study.tuning import Tuning
from emogrid.results.tune_select import select


def study(tune: dict) -> dict:
    return finalize({"grid": {"labels": [4], "samples": [800], "models": ["m"], "methods": ["full"], "seeds": [0]},
                     "models": {"m": {"id": "org/m"}}, "tune": tune})


def test_a_halving_rung_keeps_the_best_ceil_n_over_eta(tmp_path):
    lrs = [1.0e-5, 3.0e-5, 1.0e-4, 3.0e-4, 1.0e-3]
    tuning = Tuning(study({"params": {"train.lr": lrs}, "halving": {"eta": 2, "rungs": 3}}), tmp_path)
    group = "goemotions/m/full"
    job = tuning.select_job(group, 0)
    assert job["keep"] == 3 and job["budget"] == "1of4"
    scores = [0.50, 0.70, 0.65, 0.60, 0.40]
    for cand, score in zip(job["candidates"], scores):
        fake_cell(Path(cand["cells"][0]), score, budget=0.25)
    rung0 = select(job)
    assert rung0["kept"] == ["train.lr=3e-05", "train.lr=0.0001", "train.lr=0.0003"]  # ceil(5/2) = 3, best first
    job1 = tuning.select_job(group, 1, rung0["kept"])
    assert job1["keep"] == 2 and len(tuning.cells(group, 1, rung0["kept"])) == 3


def fake_cell(run_dir: Path, score: float | None, *, budget: float = 1.0, health: str = "ok",
              failed: bool = False, steps: int = 40, error: str = "RuntimeError") -> None:
    """A tuning cell's result files as emogrid train writes them (val only)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cell_id = "/".join(run_dir.parts[-6:])
    if failed:
        (run_dir / "failure.json").write_text(json.dumps({
            "cell": {}, "cell_id": cell_id, "status": "failed", "attempt": 1,
            "error": {"type": error, "message": "boom", "hint": None, "retryable": False, "phase": "train"},
            "provenance": {}}))
        return
    split = {"accuracy": score, "precision_macro": score, "recall_macro": score, "f1_macro": score,
             "precision_weighted": score, "recall_weighted": score, "f1_weighted": score, "n": 80,
             "labels": ["a", "b"], "per_class": {}}
    (run_dir / "metrics.json").write_text(json.dumps({
        "cell": {"dataset": "goemotions", "model": "m", "method": "full", "labels": 4, "samples": 800, "seed": 0},
        "cell_id": cell_id, "status": "ok", "val": split, "tuning": {"budget": budget},
        "health": {"state": health, "reason": f"made {health}"},
        "efficiency": {"trainable_params": 1, "total_params": 1, "trainable_percent": 100, "train_seconds": 2.0,
                       "eval_seconds": 0.1, "peak_memory_mb": 1, "peak_memory_kind": "rss",
                       "train_samples_per_second": 1, "train_tokens_per_second": 1, "epochs_run": 1, "best_step": steps,
                       "optimizer_steps": steps, "batch_size": 4, "grad_accum": 1},
        "provenance": {"versions": {}, "device": "cpu", "config_hash": "x"}}))


def lr_job(tmp_path, lrs):
    tuning = Tuning(study({"params": {"train.lr": lrs}}), tmp_path)
    return tuning.select_job("goemotions/m/full", 0)


def test_select_picks_the_best_validation_score_ties_to_the_first_listed(tmp_path):
    job = lr_job(tmp_path, [1.0e-5, 1.0e-4, 1.0e-3, 1.0e-2])
    for cand, score in zip(job["candidates"], [0.5, 0.7, 0.7, 0.6]):
        fake_cell(Path(cand["cells"][0]), score)
    result = select(job)
    assert result["choice"] == {"train.lr": 1.0e-4}  # 1e-4 and 1e-3 tie at 0.7: the first listed wins
    assert [c["label"] for c in result["candidates"]] == [
        "train.lr=0.0001", "train.lr=0.001", "train.lr=0.01", "train.lr=1e-05"]
    assert "listed first" in result["rule"] and result["score"] == 0.7 and result["healthy"]
    assert result["total_compute"]["cells"] == 4 and result["total_compute"]["saved_share"] == 0.0
    # listed the other way round, the tie goes the other way: the rule is the listing order
    job = lr_job(tmp_path / "b", [1.0e-3, 1.0e-4])
    for cand, score in zip(job["candidates"], [0.7, 0.7]):
        fake_cell(Path(cand["cells"][0]), score)
    assert select(job)["choice"] == {"train.lr": 1.0e-3}


def test_a_diverged_untrained_or_failed_candidate_loses_whatever_its_score(tmp_path):
    job = lr_job(tmp_path, [1.0e-5, 1.0e-4, 1.0e-3, 10.0, 100.0])
    fake_cell(Path(job["candidates"][0]["cells"][0]), 0.55)
    fake_cell(Path(job["candidates"][1]["cells"][0]), 0.90, health="did_not_train")
    fake_cell(Path(job["candidates"][2]["cells"][0]), None, failed=True)
    fake_cell(Path(job["candidates"][3]["cells"][0]), 0.95, health="diverged")
    # a NaN loss stops training with NaNLossError (emogrid.training.callbacks): that cell diverged
    fake_cell(Path(job["candidates"][4]["cells"][0]), None, failed=True, error="NaNLossError")
    result = select(job)
    assert result["choice"] == {"train.lr": 1.0e-5} and result["healthy"]
    ranked = {c["label"]: c for c in result["candidates"]}
    assert ranked["train.lr=10"]["states"] == ["diverged"] and not ranked["train.lr=10"]["healthy"]
    assert ranked["train.lr=100"]["states"] == ["diverged"] and not ranked["train.lr=100"]["healthy"]
    assert ranked["train.lr=0.001"]["states"] == ["failed"] and ranked["train.lr=0.001"]["rank"] >= 4


def test_select_refuses_a_group_without_any_finished_cell(tmp_path):
    job = lr_job(tmp_path, [1.0e-5, 1.0e-4])
    for cand in job["candidates"]:
        fake_cell(Path(cand["cells"][0]), None, failed=True)
    with pytest.raises(EmogridError, match="no candidate has a finished tuning cell"):
        select(job)


