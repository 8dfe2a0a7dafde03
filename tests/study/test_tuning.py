"""The `tune:` section of a study (emogrid.study.tune_config, emogrid.study.tuning): config
checks, groups and candidates, the study cells' tuned specs and successive halving's rungs."""

from __future__ import annotations

import json
import math

import pytest

from emogrid.errors import ConfigError
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


def test_halving_budgets_per_rung():
    config = study({"params": {"train.lr": [1.0e-5, 3.0e-5, 1.0e-4, 3.0e-4, 1.0e-3]},
                    "halving": {"eta": 2, "rungs": 3}})
    tuning = Tuning(config, "results")
    assert tuning.sizes("goemotions/m/full") == [5, 3, 2]
    assert [tuning.budget(r) for r in range(3)] == ["1of4", "1of2", "full"]
    assert budget_label(1) == "full"
    assert [c.spec["tuning"]["budget"] for c in tuning.cells("goemotions/m/full", 0)] == [0.25] * 5
    job = tuning.select_job("goemotions/m/full", 0)
    assert job["keep"] == 3 and job["budget"] == "1of4" and job["rungs"] == 3


def test_each_arm_tunes_the_pairs_it_runs(tmp_path):
    """grid.arms (a union of partial grids): a group per (model, method) some arm runs, none for
    the pairs no arm runs; the tuned study cells come out of their own arm."""
    config = study({"params": {"train.lr": [1.0e-4, 1.0e-3]}},
                   models={"m2": {"id": "org/m2"}},
                   grid={"models": ["m", "m2"], "methods": ["full", "lora"],
                         "arms": [{"models": ["m"], "methods": ["lora"]}, {"models": ["m2"], "methods": ["full"]}]})
    tuning = Tuning(config, tmp_path)
    assert sorted(tuning.groups) == ["goemotions/m/lora", "goemotions/m2/full"]
    assert {c.axes["seed"] for c in tuning.all_cells()} == {0}  # tune.seeds, not the arms' seeds
    choice = tmp_path / "tune" / "goemotions" / "m2" / "full.json"
    choice.parent.mkdir(parents=True)
    choice.write_text(json.dumps({"choice": {"train.lr": 1.0e-3}}))
    tuned = [tuning.final(c) for c in expand_cells(config)]
    assert {c.cell_id.split("/")[2] for c in tuned} == {"lora", "full"}
    assert all(c.spec["train"]["lr"] == 1.0e-3 for c in tuned if c.axes["method"] == "full")
    assert all("pending" in c.spec["tuned"] for c in tuned if c.axes["method"] == "lora")
