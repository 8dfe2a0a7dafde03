"""The `tune:` section without Snakemake: config checks, groups and candidates, the study cells'
tuned specs, successive halving's rung sizes, the selection rule and training health; and, on a
tiny model, that a tuning cell never reads the test split (garbage test labels: same choice)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
from toy_data import toy_rows

from emogrid.errors import ConfigError, EmogridError
from emogrid.study.config import finalize
from emogrid.study.grid import expand_cells
from emogrid.study.tuning import Tuning, budget_label, rung_sizes

BASE = {"grid": {"labels": [4], "samples": [800], "models": ["m"], "methods": ["full", "lora", "loraplus"],
                 "seeds": [0, 1, 2]},
        "models": {"m": {"id": "org/m"}}}


def study(tune: dict, **extra) -> dict:
    raw = json.loads(json.dumps(BASE))
    for key, value in extra.items():
        raw[key] = {**raw.get(key, {}), **value}
    return finalize({**raw, "tune": tune})


# ---------------------------------------------------------------- config

@pytest.mark.parametrize("tune, extra, expected", [
    ({"params": {"train.lrr": [1.0e-4]}}, {}, "tune.params.train: unknown key 'lrr' (did you mean 'lr'?)"),
    ({"params": {"trian.lr": [1.0e-4]}}, {}, "'trian' is not a section that can be tuned (did you mean 'train'?)"),
    ({"params": {"train.lr": [-1.0]}}, {}, "tune.params.train.lr: expected number > 0, got -1.0"),
    ({"params": {"train.lr": [1.0e-4]}}, {"train": {"lr": [1.0e-4, 2.0e-4]}}, "also swept by the grid"),
    ({"params": {"train.metric": ["accuracy"]}}, {}, "train.metric: says what a cell reports"),
    ({"params": {"train.lr": [1.0e-4]}, "methods": {"ia3": {"train.lr": [1.0e-3]}}}, {},
     "tune.methods.ia3: not a method of grid.methods"),
    ({"params": {"train.lr": [1.0e-4]}, "methods": {"full": {"train.lr": [1.0e-5]}}, "per": ["dataset", "model"]},
     {}, "tune.methods: per-method search lists need 'method' in tune.per"),
    ({"params": {"ia3.targets": ["qv"]}}, {}, "none of grid.methods (full, lora, loraplus) reads the ia3 section"),
])
def test_a_bad_tune_section_is_one_clear_config_error(tune, extra, expected):
    with pytest.raises(ConfigError) as err:
        study(tune, **extra)
    assert expected in str(err.value)


def test_without_tune_nothing_changes():
    config = finalize(json.loads(json.dumps(BASE)))
    tuning = Tuning(config, "results")
    cells = expand_cells(config)
    assert not tuning.enabled and tuning.groups == {}
    assert [tuning.final(c) for c in cells] == cells and all("tuned" not in c.spec for c in cells)


# ---------------------------------------------------------------- groups, candidates, tuned specs

def test_groups_candidates_and_per_method_lists():
    config = study({"params": {"train.lr": [1.0e-4, 1.0e-3], "lora.r": [8, 16]},
                    "methods": {"full": {"train.lr": [1.0e-5, 3.0e-5]}}},
                   methods={"full": {"train": {"lr": 2.0e-5}}})
    tuning = Tuning(config, "results")
    assert sorted(tuning.groups) == ["goemotions/m/full", "goemotions/m/lora", "goemotions/m/loraplus"]
    lora = tuning.groups["goemotions/m/lora"]
    # keys sorted, each key's values in the order the config lists them
    assert lora.keys == ("lora.r", "train.lr")
    assert [lora.label(v) for v in lora.candidates] == [
        "lora.r=8+train.lr=0.0001", "lora.r=8+train.lr=0.001", "lora.r=16+train.lr=0.0001", "lora.r=16+train.lr=0.001"]
    # full reads no lora section; its own list wins over the lr it pins under methods.full
    full = tuning.groups["goemotions/m/full"]
    assert full.keys == ("train.lr",) and [v["train.lr"] for v in full.candidates] == [1.0e-5, 3.0e-5]
    # one tuning cell per candidate and tune seed (default [0]), validation only
    cells = tuning.cells("goemotions/m/lora", 0)
    assert len(cells) == 4 and {c.axes["seed"] for c in cells} == {0}
    assert all(c.spec["tuning"] == {"budget": 1.0} for c in cells)
    assert tuning.run_dir("full", cells[0].cell_id) == f"results/tune/cells/full/{cells[0].cell_id}"


def test_study_cells_take_the_choice_once_it_exists(tmp_path):
    config = study({"params": {"train.lr": [1.0e-4, 1.0e-3], "loraplus.ratio": [4, 16]}})
    tuning = Tuning(config, tmp_path)
    cells = {c.cell_id: c for c in expand_cells(config)}
    plus = cells["goemotions/m/loraplus/k4_n800/s1"]
    pending = tuning.final(plus)
    # before the choice: a spec emogrid train refuses, never a value nobody chose
    assert pending.spec["tuned"] == {"pending": str(tmp_path / "tune/goemotions/m/loraplus.json")}
    choice = tmp_path / "tune" / "goemotions" / "m" / "loraplus.json"
    choice.parent.mkdir(parents=True)
    choice.write_text(json.dumps({"choice": {"loraplus.ratio": 4, "train.lr": 1.0e-3}}))
    tuned = tuning.final(plus)
    assert tuned.cell_id == plus.cell_id  # the study's ids: one table row per method
    assert tuned.spec["train"]["lr"] == 1.0e-3 and tuned.spec["method"]["loraplus_ratio"] == 4.0
    assert tuned.spec["tuned"] == {"loraplus.ratio": 4, "train.lr": 1.0e-3}
    assert tuned.spec["config_hash"] not in (plus.spec["config_hash"], pending.spec["config_hash"])
    # lora reads no loraplus section: its candidates vary train.lr only
    assert tuning.groups["goemotions/m/lora"].keys == ("train.lr",)
    # a choice among other candidates (the search changed) is no choice: the group selects again
    choice.write_text(json.dumps({"choice": {"loraplus.ratio": 8, "train.lr": 1.0e-3}}))
    assert "pending" in tuning.final(plus).spec["tuned"]


def test_a_choice_shared_by_methods_counts_each_cell_for_the_candidates_it_agrees_with():
    config = study({"params": {"train.lr": [1.0e-4, 1.0e-3], "lora.r": [8, 16]}, "per": ["dataset", "model"]})
    tuning = Tuning(config, "results")
    (name, group), = tuning.groups.items()
    assert name == "goemotions/m" and set(group.methods) == {"full", "lora", "loraplus"}
    assert len(group.candidates) == 4
    job = tuning.select_job(name, 0)
    first = job["candidates"][0]  # lora.r=8, lr 1e-4: full's lr-1e-4 cell counts for it too
    assert len(first["cells"]) == 3
    assert sum("/m/full/" in c for c in first["cells"]) == 1
    assert len(tuning.cells(name, 0)) == 2 + 4 + 4  # full ignores lora.r: 2 cells, not 4


# ---------------------------------------------------------------- successive halving

@pytest.mark.parametrize("n, eta, rungs, sizes", [
    (9, 3, 3, [9, 3]),          # 9 -> 3 -> 1 left: nothing to choose at the last rung, not trained
    (5, 2, 3, [5, 3, 2]),
    (27, 3, 4, [27, 9, 3]),
    (10, 3, 2, [10, 4]),
    (4, None, 1, [4]),
])
def test_halving_keeps_ceil_n_over_eta_per_rung(n, eta, rungs, sizes):
    assert rung_sizes(n, eta, rungs) == sizes
    for before, after in zip(sizes, sizes[1:]):
        assert after == math.ceil(before / eta)


def test_halving_rungs_budgets_and_selection(tmp_path):
    from emogrid.results.tune_select import select

    lrs = [1.0e-5, 3.0e-5, 1.0e-4, 3.0e-4, 1.0e-3]
    config = study({"params": {"train.lr": lrs}, "halving": {"eta": 2, "rungs": 3}})
    config["grid"]["methods"] = ["full"]
    tuning = Tuning(config, tmp_path)
    group = "goemotions/m/full"
    assert tuning.sizes(group) == [5, 3, 2]
    assert [tuning.budget(r) for r in range(3)] == ["1of4", "1of2", "full"]
    assert budget_label(1) == "full"
    assert [c.spec["tuning"]["budget"] for c in tuning.cells(group, 0)] == [0.25] * 5
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
              failed: bool = False, steps: int = 40) -> None:
    """A tuning cell's result files as emogrid train writes them (val only)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cell_id = "/".join(run_dir.parts[-6:])
    if failed:
        (run_dir / "failure.json").write_text(json.dumps({
            "cell": {}, "cell_id": cell_id, "status": "failed", "attempt": 1,
            "error": {"type": "RuntimeError", "message": "boom", "hint": None, "retryable": False, "phase": "train"},
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


# ---------------------------------------------------------------- the selection rule

def lr_job(tmp_path, lrs):
    config = study({"params": {"train.lr": lrs}})
    config["grid"]["methods"] = ["full"]
    tuning = Tuning(config, tmp_path)
    return tuning.select_job("goemotions/m/full", 0)


def test_select_picks_the_best_validation_score_ties_to_the_first_listed(tmp_path):
    from emogrid.results.tune_select import select

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
    from emogrid.results.tune_select import select

    job = lr_job(tmp_path, [1.0e-5, 1.0e-4, 1.0e-3, 10.0])
    fake_cell(Path(job["candidates"][0]["cells"][0]), 0.55)
    fake_cell(Path(job["candidates"][1]["cells"][0]), 0.90, health="did_not_train")
    fake_cell(Path(job["candidates"][2]["cells"][0]), None, failed=True)
    fake_cell(Path(job["candidates"][3]["cells"][0]), 0.95, health="diverged")
    result = select(job)
    assert result["choice"] == {"train.lr": 1.0e-5} and result["healthy"]
    ranked = {c["label"]: c for c in result["candidates"]}
    assert ranked["train.lr=10"]["states"] == ["diverged"] and not ranked["train.lr=10"]["healthy"]
    assert ranked["train.lr=0.001"]["states"] == ["failed"] and ranked["train.lr=0.001"]["rank"] == 4


def test_select_refuses_a_group_without_any_finished_cell(tmp_path):
    from emogrid.results.tune_select import select

    job = lr_job(tmp_path, [1.0e-5, 1.0e-4])
    for cand in job["candidates"]:
        fake_cell(Path(cand["cells"][0]), None, failed=True)
    with pytest.raises(EmogridError, match="no candidate has a finished tuning cell"):
        select(job)


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
