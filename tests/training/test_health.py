"""Training health (emogrid.training.health) and tuning cells in `emogrid train`: a study cell
refuses to train before its choice exists, and a tuning cell never reads the test split (garbage
test labels: the very same validation scores and choice)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from toy_data import toy_rows

from emogrid.study.config import finalize
from emogrid.study.tuning import Tuning

# ---------------------------------------------------------------- training health

@pytest.mark.parametrize("losses, state", [
    ([1.386, 1.10, 0.80, 0.52], "ok"),
    ([1.386, 1.386, 1.385, 1.387, 1.386], "did_not_train"),   # MiniLM LoRA+ of issue 22: flat at ln 4
    ([1.386, 1.2, 3.5, 41.0], "diverged"),                     # ended above its start
    ([1.386, 0.9, 0.6, 1.40], "diverged"),                     # learned, then climbed back above the start
    ([1.386, 0.9, float("nan"), 0.5], "diverged"),            # non-finite at any step
    ([1.386], "unchecked"),
])
def test_training_health(losses, state):
    from emogrid.training.health import training_health

    rows = [{"step": i + 1, "loss": v} for i, v in enumerate(losses)] + [{"step": 9, "eval": {"accuracy": 0.5}}]
    health = training_health(rows)
    assert health["state"] == state, health
    assert health["reason"]


def test_health_columns_of_a_result_file(tmp_path):
    """cells.csv's train_health: recorded, judged from train_log.jsonl for an older file, and
    `diverged` for a cell that failed because its loss became NaN."""
    from emogrid.results.collect import health_columns

    assert health_columns({"status": "ok", "health": {"state": "ok", "reason": "fell"}}, tmp_path) == \
        {"train_health": "ok", "train_health_reason": "fell"}
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps({"step": i, "loss": 1.386}) + "\n" for i in (1, 5, 9)))
    assert health_columns({"status": "ok"}, tmp_path)["train_health"] == "did_not_train"
    nan = {"status": "failed", "error": {"type": "NaNLossError", "message": "training loss became nan at step 3"}}
    assert health_columns(nan, tmp_path) == {"train_health": "diverged",
                                             "train_health_reason": "training loss became nan at step 3"}
    assert health_columns({"status": "failed", "error": {"type": "OutOfMemoryError", "message": "x"}}, tmp_path) == {}


def test_a_study_cell_never_trains_before_its_choice(tmp_path):
    from conftest_train import cell_spec

    from emogrid.training import train

    spec = cell_spec(tmp_path / "no-model", "full")
    spec["tuned"] = {"pending": "results/tune/goemotions/m/full.json"}
    rc = train.run(argparse.Namespace(spec=json.dumps(spec), data=str(tmp_path), out=str(tmp_path / "out"), attempt=1))
    assert rc != 0
    failure = json.loads((tmp_path / "out" / "failure.json").read_text())
    assert "results/tune/goemotions/m/full.json, which does not exist yet" in failure["error"]["message"]


# ---------------------------------------------------------------- the test split is never seen

def toy_subset(out: Path, garbage_test: bool = False) -> Path:
    out.mkdir(parents=True)
    test = toy_rows(30, 3)
    if garbage_test:  # label indices no subset has: any reader of test.jsonl would fail on them
        test = [{**r, "text": "garbage", "labels": [999]} for r in test]
    for split, rows in (("train", toy_rows(120, 1)), ("val", toy_rows(30, 2)), ("test", test)):
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (out / "manifest.json").write_text(json.dumps({"labels": ["pos", "neg", "mad"], "checksum": "toy"}))
    return out


def test_the_choice_is_identical_when_the_test_labels_are_garbage(tiny_models, tmp_path, one_torch_thread):
    """Tuning cells of one group trained in-process on the same subset, once with its real test
    labels and once with garbage in their place: same validation scores, same choice; the
    tuning cells' results hold no test split at all."""
    from emogrid.results.tune_select import select
    from emogrid.training import train

    config = finalize({"grid": {"labels": [3], "samples": [120], "models": ["tiny-bert"], "methods": ["full"],
                                "seeds": [0]},
                       "models": {"tiny-bert": {"path": str(tiny_models["bert"])}},
                       "train": {"batch_size": 8, "epochs": 3, "eval_every": "epoch", "patience": 0, "max_length": 32,
                                 "precision": "fp32", "eval_batch_size": 64},
                       "tune": {"params": {"train.lr": [1.0e-3, 1.0e-2, 10.0]}}})
    results = {}
    for name, garbage in (("clean", False), ("garbage", True)):
        data = toy_subset(tmp_path / name / "data", garbage_test=garbage)
        tuning = Tuning(config, tmp_path / name / "results")
        group = "goemotions/tiny-bert/full"
        for cell in tuning.cells(group, 0):
            out = Path(tuning.run_dir("full", cell.cell_id))
            rc = train.run(argparse.Namespace(spec=json.dumps(cell.spec), data=str(data), out=str(out), attempt=1))
            assert rc == 0, (out / "run.log").read_text()[-2000:]
            metrics = json.loads((out / "metrics.json").read_text())
            assert "test" not in metrics and metrics["tuning"] == {"budget": 1.0}
            assert {row["split"] for row in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())} \
                == {"val"}
        results[name] = select(tuning.select_job(group, 0))
    clean, garbage = results["clean"], results["garbage"]
    assert garbage["choice"] == clean["choice"]
    assert [(c["label"], c["score"]) for c in garbage["candidates"]] == \
        [(c["label"], c["score"]) for c in clean["candidates"]]
    # and lr 10 diverged: it is never the choice
    lr10 = next(c for c in clean["candidates"] if c["values"]["train.lr"] == 10.0)
    assert lr10["states"] == ["diverged"] and clean["choice"] != {"train.lr": 10.0} and clean["healthy"]
