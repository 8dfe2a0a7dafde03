"""Grid expansion: axes, sweeps, paths and specs (pure Python, no Snakemake)."""

from __future__ import annotations

import copy

import yaml

from emogrid.study.config import finalize
from emogrid.study.grid import expand_cells, find_sweeps, format_value, subsets
from emogrid.study.merge import deep_merge
from tests.helpers import REPO

BASE = yaml.safe_load((REPO / "config.yaml").read_text())


def cells_of(patch: dict | None = None):
    return expand_cells(finalize(deep_merge(copy.deepcopy(BASE), patch or {})))


def test_default_grid_is_the_published_study():
    cells = cells_of()
    assert len(cells) == 4 * 3 * 5 * 1 * 3 == 180
    assert len(subsets(cells)) == 4 * 3 * 3
    ids = {c.cell_id for c in cells}
    assert len(ids) == len(cells)
    assert "goemotions/llama-3.2-1b/qlora/k16_n2400/s2" in ids
    cell = next(c for c in cells if c.cell_id == "goemotions/gpt2-xl/qlora/k4_n800/s1")
    assert cell.data_dir == "data/goemotions/k4_n800_s1"
    assert cell.run_dir == "runs/goemotions/gpt2-xl/qlora/k4_n800/s1"
    spec = cell.spec
    assert spec["method"] == {"name": "qlora", "peft": "lora", "quantize": "nf4",
                              "use_dora": False, "loraplus_ratio": None}
    assert spec["train"]["optim"] == "adamw_8bit"  # QLoRA brings 8-bit AdamW
    assert spec["lora"]["targets"] == "qv" and "ia3" not in spec  # the paper's targets
    assert spec["train"]["patience"] == 10 and spec["train"]["eval_every"] == "0.25 epoch"
    assert spec["model"]["id"] == "openai-community/gpt2-xl"
    assert spec["cell"] == {"dataset": "goemotions", "model": "gpt2-xl", "method": "qlora",
                            "labels": 4, "samples": 800, "seed": 1}


def test_swept_parameter_becomes_axis_path_and_spec():
    cells = cells_of({"grid": {"models": ["bert-base"], "methods": ["lora"], "labels": [2],
                               "samples": [800], "seeds": [0]},
                      "lora": {"r": [8, 64]}, "train": {"lr": [1.0e-4, 2.0e-4]}})
    assert len(cells) == 4
    by_id = {c.cell_id: c for c in cells}
    cid = "goemotions/bert-base/lora/lora.r=64+train.lr=0.0002/k2_n800/s0"
    assert cid in by_id
    cell = by_id[cid]
    assert cell.axes["lora.r"] == 64 and cell.axes["train.lr"] == 2e-4
    assert cell.spec["lora"]["r"] == 64 and cell.spec["train"]["lr"] == 2e-4
    assert cell.spec["cell"]["lora.r"] == 64  # part of the cell's metrics too


def test_sweep_of_a_section_a_method_ignores_does_not_multiply_it():
    cells = cells_of({"grid": {"models": ["bert-base"], "methods": ["full", "lora", "ia3"],
                               "labels": [2], "samples": [800], "seeds": [0]},
                      "lora": {"r": [8, 16, 32]}})
    per_method = {m: [c for c in cells if c.axes["method"] == m] for m in ("full", "lora", "ia3")}
    assert [len(v) for v in per_method.values()] == [1, 3, 1]
    assert "lora.r" not in per_method["full"][0].axes
    assert per_method["full"][0].cell_id == "goemotions/bert-base/full/k2_n800/s0"


def test_method_override_wins_over_sweep_and_global():
    cells = cells_of({"grid": {"models": ["bert-base"], "methods": ["lora", "r4"], "labels": [2],
                               "samples": [800], "seeds": [0]},
                      "methods": {"r4": {"base": "lora", "lora": {"r": 4}, "train": {"lr": 3.0e-4}}},
                      "lora": {"r": [8, 16]}})
    r4 = [c for c in cells if c.axes["method"] == "r4"]
    assert len(r4) == 1 and r4[0].spec["lora"]["r"] == 4 and r4[0].spec["train"]["lr"] == 3e-4
    assert len([c for c in cells if c.axes["method"] == "lora"]) == 2


def test_spec_hash_changes_only_for_cells_that_read_the_changed_key():
    patch = {"grid": {"models": ["bert-base"], "methods": ["full", "lora"], "labels": [2],
                      "samples": [800], "seeds": [0]}}
    before = {c.cell_id: c.spec["config_hash"] for c in cells_of(patch)}
    after = {c.cell_id: c.spec["config_hash"] for c in cells_of({**patch, "lora": {"r": 32}})}
    changed = {cid for cid in before if before[cid] != after[cid]}
    assert changed == {"goemotions/bert-base/lora/k2_n800/s0"}


def test_custom_method_variants():
    cells = cells_of({"grid": {"models": ["bert-base"], "methods": ["qlora-8bit", "lora-plus"],
                               "labels": [2], "samples": [800], "seeds": [0]},
                      "methods": {"qlora-8bit": {"base": "qlora", "quantize": "int8"},
                                  "lora-plus": {"base": "loraplus"}},
                      "loraplus": {"ratio": 8}})
    spec = {c.axes["method"]: c.spec["method"] for c in cells}
    assert spec["qlora-8bit"]["quantize"] == "int8" and spec["qlora-8bit"]["peft"] == "lora"
    assert spec["lora-plus"]["loraplus_ratio"] == 8.0


def test_find_sweeps_and_value_format():
    config = finalize(deep_merge(copy.deepcopy(BASE), {"lora": {"targets": ["attention", "all-linear"]}}))
    assert find_sweeps(config) == {"lora.targets": ["attention", "all-linear"]}
    assert [format_value(v) for v in (1e-4, 2.0, 16, True, "q_proj,v_proj")] == \
        ["0.0001", "2", "16", "true", "q_proj-v_proj"]


def test_thousand_cell_grid_expands():
    # its speed is measured in bench/orchestration.py (snakemake -n on this grid), not asserted
    cells = cells_of({"grid": {"methods": ["full", "lora", "qlora", "ia3", "loraplus", "dora"]}})
    assert len(cells) == 5 * 6 * 4 * 3 * 3 == 1080
    assert len({c.cell_id for c in cells}) == 1080


def test_per_model_overrides_apply_to_that_model_only_and_methods_win():
    cells = cells_of({"grid": {"models": ["bert-base", "gpt2-xl"], "methods": ["lora", "full"],
                               "labels": [2], "samples": [800], "seeds": [0]},
                      "models": {"bert-base": {"train": {"lr": 2.0e-5}, "lora": {"targets": "attention"}}},
                      "methods": {"full": {"train": {"lr": 1.0e-5}}},
                      "lora": {"targets": "qv"}})
    spec = {(c.axes["model"], c.axes["method"]): c.spec for c in cells}
    assert spec["bert-base", "lora"]["train"]["lr"] == 2e-5
    assert spec["bert-base", "lora"]["lora"]["targets"] == "attention"
    assert spec["gpt2-xl", "lora"]["train"]["lr"] == 1e-4 and spec["gpt2-xl", "lora"]["lora"]["targets"] == "qv"
    assert spec["bert-base", "full"]["train"]["lr"] == 1e-5  # methods.<m> wins over models.<name>
    assert spec["bert-base", "lora"]["config_hash"] != spec["gpt2-xl", "lora"]["config_hash"]


def test_a_model_override_of_a_swept_key_removes_that_axis_for_the_model():
    cells = cells_of({"grid": {"models": ["bert-base", "gpt2-xl"], "methods": ["lora"],
                               "labels": [2], "samples": [800], "seeds": [0]},
                      "models": {"bert-base": {"lora": {"r": 4}}}, "lora": {"r": [8, 16]}})
    per_model = {m: [c for c in cells if c.axes["model"] == m] for m in ("bert-base", "gpt2-xl")}
    assert len(per_model["bert-base"]) == 1 and per_model["bert-base"][0].spec["lora"]["r"] == 4
    assert "lora.r" not in per_model["bert-base"][0].axes
    assert sorted(c.spec["lora"]["r"] for c in per_model["gpt2-xl"]) == [8, 16]


def test_grid_summary_shows_the_paper_targets_per_family():
    from emogrid.planning.grid_command import target_lines

    lines = target_lines(cells_of())
    assert "gpt2-xl (gpt2): lora.targets qv = c_attn" in lines
    assert "bert-base (bert): lora.targets qv = query, value" in lines
    assert "llama-3.2-1b (llama): lora.targets qv = q_proj, v_proj" in lines
