"""emogrid.study.cell_id: the one place a cell id is formatted, parsed, labelled and turned into paths."""

import pytest

from emogrid.study.cell_id import (
    CellId,
    arm_label,
    format_value,
    format_variant,
    parse_cell_id,
    parse_variant,
    short_variant,
)
from emogrid.study.config import load_config
from emogrid.study.grid import expand_cells


def test_round_trip_with_and_without_variant():
    plain = CellId("goemotions", "bert-base", "lora", 4, 800, 0)
    assert str(plain) == "goemotions/bert-base/lora/k4_n800/s0"
    assert CellId.parse(str(plain)) == plain
    swept = CellId("goemotions", "bert-base", "lora", 16, 2400, 2,
                   format_variant({"train.lr": 1e-4, "lora.r": 16.0, "lora.targets": "q_proj,v_proj"}))
    assert str(swept) == "goemotions/bert-base/lora/lora.r=16+lora.targets=q_proj-v_proj+train.lr=0.0001/k16_n2400/s2"
    assert CellId.parse(str(swept)) == swept
    assert swept.swept == {"lora.r": 16, "lora.targets": "q_proj-v_proj", "train.lr": 0.0001}
    assert swept.run_dir == f"runs/{swept}"
    assert swept.data_dir == "data/goemotions/k16_n2400_s2"


def test_one_formatter_integral_floats_drop_the_point():
    # grid.py wrote 16.0 as "16" and aggregate.py as "16.0": the grid's spelling (the ids on disk) won
    assert [format_value(v) for v in (16.0, 1e-4, True, False, 8, "all-linear")] == \
        ["16", "0.0001", "true", "false", "8", "all-linear"]
    assert CellId.from_axes({"dataset": "d", "model": "m", "method": "lora", "labels": 2, "samples": 80,
                             "seed": 0, "lora.alpha": 16.0}).variant == "lora.alpha=16"


def test_parse_rejects_non_ids_and_lenient_reader_returns_empty():
    with pytest.raises(ValueError, match=r"k\{K\}_n\{N\}"):
        CellId.parse("goemotions/bert-base/lora/k4/s0")
    assert parse_cell_id("not/a/cell") == {}
    axes = parse_cell_id("ds/m/lora/lora.r=8+train.lr=0.0002/k2_n80/s1")
    assert axes == {"dataset": "ds", "model": "m", "method": "lora", "variant": "lora.r=8+train.lr=0.0002",
                    "labels": 2, "samples": 80, "seed": 1, "lora.r": 8, "train.lr": 0.0002}
    assert "variant" not in parse_cell_id("ds/m/full/k2_n80/s1")
    assert parse_variant("") == {}


def test_labels_short_and_full():
    assert arm_label("full", "") == "full"
    assert arm_label("lora", "lora.alpha=16+lora.r=8") == "lora [lora.alpha=16+lora.r=8]"
    assert arm_label("lora", "lora.alpha=16+lora.r=8", short=True) == "lora [alpha=16 r=8]"
    assert short_variant("lora.r=8") == "r=8"
    assert CellId.parse("ds/m/lora/lora.r=8/k2_n80/s1").label == "m · lora [r=8] · k=2, n=80, seed 1"


def test_grid_ids_are_cell_ids(tmp_path):
    overlay = tmp_path / "sweep.yaml"
    overlay.write_text("grid: {models: [tiny-bert], methods: [lora, full], labels: [2], samples: [80], seeds: [0]}\n"
                       "models: {tiny-bert: {id: x/tiny-bert}}\n"
                       "lora: {r: [4, 8]}\ntrain: {lr: [1.0e-4, 2.0e-4]}\n")
    cells = expand_cells(load_config([str(overlay)]))
    assert len(cells) == 4 + 2
    for cell in cells:
        cid = CellId.parse(cell.cell_id)
        assert CellId.from_axes(cell.axes) == cid == cell.id
        assert cell.run_dir == f"runs/{cell.cell_id}" and cell.data_dir == cid.data_dir
    assert "goemotions/tiny-bert/lora/lora.r=4+train.lr=0.0001/k2_n80/s0" in {c.cell_id for c in cells}
