"""grid.arms: a study as the union of partial grids (emogrid.study.arms) -- expansion, the
errors a wrong arm gets, and the readers that follow it (expected cells, pending rows, paired
comparisons)."""

from __future__ import annotations

import copy

import pytest

from emogrid.errors import ConfigError
from emogrid.study.config import finalize
from emogrid.study.grid import expand_cells

MODELS = {"gemma": {"id": "google/gemma-1.1-2b-it"}, "qwen": {"id": "Qwen/Qwen2.5-1.5B"},
          "bert": {"id": "google-bert/bert-base-uncased"}}
AXES = {"labels": [2, 4], "samples": [800], "seeds": [0, 1]}


def study(grid: dict, **top) -> dict:
    return {"grid": grid, "models": copy.deepcopy(MODELS), **top}


def ids(config: dict) -> list[str]:
    return [c.cell_id for c in expand_cells(finalize(config))]


def test_arms_expand_to_exactly_the_union_of_their_grids():
    arms = study({**AXES, "arms": [{"models": ["gemma"], "methods": ["lora", "ia3"]},
                                   {"models": ["qwen"], "methods": ["qlora"], "labels": [4]}]})
    # the oracle: each arm written as a study of its own (a full cross product)
    first = ids(study({**AXES, "models": ["gemma"], "methods": ["lora", "ia3"]}))
    second = ids(study({**AXES, "models": ["qwen"], "methods": ["qlora"], "labels": [4]}))
    got = ids(arms)
    assert got == first + second
    assert len(got) == 2 * 2 * 1 * 2 + 1 * 1 * 1 * 2 == 10  # not the 2 x 3 x 2 x 2 = 24 of the cross product
    assert not any("/qwen/lora/" in i or "/gemma/qlora/" in i for i in got)


def test_overlapping_arms_give_each_cell_once_and_the_top_level_is_their_union():
    config = finalize(study({**AXES, "arms": [{"models": ["gemma", "qwen"], "methods": ["lora"]},
                                              {"models": ["qwen", "bert"], "methods": ["lora", "full"]}]}))
    got = [c.cell_id for c in expand_cells(config)]
    assert len(got) == len(set(got)) == (3 * 1 + 2 * 1) * 2 * 2  # gemma/qwen/bert lora + qwen/bert full
    assert config["grid"]["models"] == ["gemma", "qwen", "bert"]  # fetch, plan and downloads read these
    assert config["grid"]["methods"] == ["lora", "full"]
    # finalized again (the workflow hands its config to the rules as JSON): the same cells
    assert [c.cell_id for c in expand_cells(finalize(copy.deepcopy(config)))] == got


def test_an_arm_narrows_a_swept_parameter_to_some_of_its_values():
    config = study({**AXES, "labels": [2], "seeds": [0], "models": ["gemma"], "methods": ["lora", "full"],
                    "arms": [{"lora.targets": ["attention"], "lora.r": [8]},
                             {"lora.targets": ["all-linear"], "lora.r": [16, 32]}]},
                   lora={"r": [8, 16, 32], "targets": ["attention", "all-linear"]})
    got = ids(config)
    variants = sorted(i.split("/")[3] for i in got if "/lora/" in i)
    # both keys narrowed in each arm: 1 + 2 of the 3 x 2 combinations
    assert variants == ["lora.r=16+lora.targets=all-linear", "lora.r=32+lora.targets=all-linear",
                        "lora.r=8+lora.targets=attention"]
    assert sum("/full/" in i for i in got) == 1  # full reads no lora section: one cell, not one per arm


@pytest.mark.parametrize("grid, top, message", [
    ({"arms": [{"models": ["gemma"], "methods": ["lora"]}, {"models": ["nope"], "methods": ["lora"]}]}, {},
     "grid.arms[1].models[0]: model 'nope' is not defined"),
    ({"arms": [{"models": ["gemma"], "methods": ["lroa"]}]}, {},
     "grid.arms[0].methods[0]: method 'lroa' is not defined"),
    ({"arms": [{"models": ["gemma"]}]}, {}, "grid.arms[0]: names no methods and grid.methods is not set"),
    ({"methods": ["lora"], "arms": [{"models": ["gemma"], "lora.r": [8]}]}, {"lora": {"r": 16}},
     "grid.arms[0].lora.r: an arm can only narrow a parameter the study sweeps"),
    ({"methods": ["lora"], "arms": [{"models": ["gemma"], "lora.r": [32]}]}, {"lora": {"r": [8, 16]}},
     "grid.arms[0].lora.r: [32] not among the swept values [8, 16]"),
    ({"methods": ["lora"], "arms": [{"models": ["gemma"], "labels": [3]}]},
     {"datasets": {"toy": {"path": "toy.csv", "text": "t", "label": "l", "label_names": ["a", "b"]}}},
     "grid.arms[0].labels[0]: 3 labels requested but dataset 'toy' has only 2 labels"),
    ({"methods": ["lora"], "arms": [{"models": ["gemma"], "rank": [3]}]}, {}, "grid.arms[0]: unknown key 'rank'"),
    ({"methods": ["lora"]}, {}, "grid: missing required key 'models' (or give grid.arms)"),
])
def test_a_wrong_arm_is_a_config_error_naming_it(grid, top, message):
    grid = {**AXES, **grid}
    if "datasets" in top:
        grid["datasets"] = ["toy"]
    with pytest.raises(ConfigError) as err:
        finalize(study(grid, **top))
    assert message in str(err.value)
    assert str(err.value).count("\n  - ") == 1  # that one problem, said once


def test_expected_cells_pending_rows_and_comparisons_follow_the_arms(tmp_path):
    """Pending rows only for the arms' cells; paired comparisons only between rows that exist."""
    import fixtures_results as F

    from emogrid.report import aggregate as A
    from emogrid.results.collect import expected_cells

    config = study({"labels": [2], "samples": [100], "seeds": [0, 1, 2],
                    "arms": [{"models": ["gemma"], "methods": ["lora", "ia3"]},
                             {"models": ["qwen"], "methods": ["qlora"]}]})
    expected = expected_cells(config=config)
    assert len(expected) == 9
    # the synthetic files carry no real config hash: compare cells by id only
    expected = [{k: v for k, v in cell.items() if k != "config_hash"} for cell in expected]
    runs = tmp_path / "runs"
    for cell in expected:
        if (cell["model"], cell["seed"]) == ("qwen", 2):
            continue  # not run yet: the one pending cell
        acc = 0.6 + 0.05 * (cell["method"] == "lora") + 0.01 * cell["seed"]
        F.write_cell(runs, "goemotions", cell["model"], cell["method"], "", {}, 2, 100, cell["seed"], acc)
    result = A.aggregate(runs, tmp_path / "tables", expected=expected)
    cells = result["cells"]
    pending = cells[cells["status"] == "pending"]
    assert list(pending["cell_id"]) == ["goemotions/qwen/qlora/k2_n100/s2"]
    subset = result["comparisons"]
    subset = subset[(subset["scope"] == "subset") & (subset["metric"] == "test_accuracy")]
    # the best row of the column (gemma lora) against every other row that exists: gemma ia3 and
    # qwen qlora; no row of a model x method outside the arms (gemma qlora, qwen lora, qwen ia3)
    pairs = {(r.model, r.method_a, r.model_b, r.method_b): r.diff_mean for r in subset.itertuples()}
    assert pairs == {("gemma", "lora", "gemma", "ia3"): pytest.approx(0.05),
                     ("gemma", "lora", "qwen", "qlora"): pytest.approx(0.05)}
