"""Typed views of a cell spec's sections read what the grid wrote, with the schema's defaults
for what a hand-made spec leaves out; the view knows every key of the section."""

from __future__ import annotations

import copy
import dataclasses
import json

from emogrid.study.config import finalize
from emogrid.study.grid import SPEC_KEYS, expand_cells
from emogrid.study.schema import section_defaults
from emogrid.study.spec_sections import MethodSpec, TrainRecipe


def _spec() -> dict:
    config = finalize({"grid": {"models": ["m"], "methods": ["lora"], "labels": [2], "samples": [40]},
                       "models": {"m": {"id": "a/b"}},
                       "train": {"lr": 3e-4, "batch_size": 8, "eval_every": "50 steps", "length_grouping": True}})
    return expand_cells(config)[0].spec


def test_the_train_view_holds_every_key_of_the_section():
    # a new train key must be read through the view too (or it is read from the dict twice over)
    keys = {f.name for f in dataclasses.fields(TrainRecipe)} - {"train_head"}
    assert keys == set(section_defaults("train"))


def test_the_train_view_reads_the_spec_and_leaves_it_as_written():
    spec = _spec()
    written = json.dumps(spec, sort_keys=True)
    train = TrainRecipe.from_spec(spec)
    assert (train.lr, train.batch_size, train.eval_every, train.length_grouping) == (3e-4, 8, "50 steps", True)
    assert {k: getattr(train, k) for k in spec["train"] if k != "train_head"} == {
        k: v for k, v in spec["train"].items() if k != "train_head"}
    assert train.batch == {"batch_size": 8, "grad_accum": 1, "eval_batch_size": spec["train"]["eval_batch_size"]}
    assert train.train_head is True
    assert json.dumps(spec, sort_keys=True) == written  # spec.json is what the grid wrote


def test_a_hand_made_spec_takes_the_schema_defaults_and_typed_values():
    partial = {"train": {"batch_size": "16", "epochs": 3, "train_head": False}}
    train = TrainRecipe.from_spec(partial)
    defaults = section_defaults("train")
    assert (train.batch_size, train.epochs, train.train_head) == (16, 3, False)
    assert (train.lr, train.precision, train.max_length) == (defaults["lr"], defaults["precision"],
                                                            defaults["max_length"])
    assert isinstance(train.lr, float) and isinstance(train.batch_size, int)
    assert partial == {"train": {"batch_size": "16", "epochs": 3, "train_head": False}}
    assert TrainRecipe.from_spec(copy.deepcopy(partial)) == train  # a value: equal views for equal sections


def test_the_method_view_holds_every_key_of_the_block_and_reads_each_method():
    assert {f.name for f in dataclasses.fields(MethodSpec)} == set(SPEC_KEYS["method"])
    config = finalize({"grid": {"models": ["m"], "methods": ["full", "qlora", "dora", "loraplus"], "labels": [2],
                                "samples": [40]}, "models": {"m": {"id": "a/b"}}, "loraplus": {"ratio": 8}})
    views = {c.axes["method"]: MethodSpec.from_spec(c.spec) for c in expand_cells(config)}
    assert views["full"].trains_every_weight and not views["full"].quantized
    assert (views["qlora"].peft, views["qlora"].quantize, views["qlora"].quantized) == ("lora", "nf4", True)
    assert views["dora"].use_dora and views["dora"].loraplus_ratio is None
    assert views["loraplus"].loraplus_ratio == 8.0 and views["loraplus"].name == "loraplus"
