"""Defaults live in the schema only: a cell built from a config that sets nothing trains with
exactly the schema's values (TrainingArguments, peft configs, quantisation), and the trainer
refuses an incomplete spec instead of filling a default of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_models import build_tiny_model

from emogrid.errors import CellError
from emogrid.study.config import finalize
from emogrid.study.grid import check_spec, expand_cells
from emogrid.study.schema import schema_default, section_defaults
from emogrid.study.spec_sections import MethodSpec

METHODS = ["full", "lora", "qlora", "ia3", "adalora", "dora", "loraplus"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_model("bert", tmp_path_factory.mktemp("spec") / "bert")


@pytest.fixture(scope="module")
def specs(tiny_bert) -> dict[str, dict]:
    """One spec per method from a config that sets only the grid and the model."""
    config = finalize({"grid": {"models": ["tiny"], "methods": METHODS, "labels": [2], "samples": [80],
                                "seeds": [0]},
                       "models": {"tiny": {"path": str(tiny_bert)}}})
    return {c.axes["method"]: c.spec for c in expand_cells(config)}


def _meta_model(path: Path, k: int = 2):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    with torch.device("meta"):
        return AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(path, num_labels=k))


def test_grid_specs_are_complete_and_hold_the_schema_defaults(specs):
    train = {k: v for k, v in section_defaults("train").items() if k != "report_to"}
    for name, spec in specs.items():
        check_spec(spec)
        expected = dict(train, optim="adamw_8bit") if name == "qlora" else train
        assert spec["train"] == expected, name
    assert specs["lora"]["lora"] == section_defaults("lora")
    assert specs["adalora"]["adalora"] == section_defaults("adalora")
    assert specs["qlora"]["quant"] == section_defaults("quant")
    assert specs["loraplus"]["method"]["loraplus_ratio"] == schema_default("loraplus.ratio")
    assert specs["full"]["data"] == {"mode": schema_default("data.mode"), "threshold": schema_default("data.threshold")}


def test_training_arguments_are_the_schema_defaults(specs, tmp_path):
    from emogrid.training.arguments import training_arguments
    from emogrid.training.failures import plan_attempt

    spec = specs["lora"]
    batch = plan_attempt(spec, tmp_path, 1)
    assert batch == {k: schema_default(f"train.{k}") for k in ("batch_size", "grad_accum", "eval_batch_size")}
    args = training_arguments(spec, tmp_path / "ckpt", batch, steps_per_epoch=20, precision="fp32", cuda=False,
                              processes=1)
    d = lambda key: schema_default(f"train.{key}")  # noqa: E731
    assert args.learning_rate == d("lr")
    assert args.weight_decay == d("weight_decay")
    assert args.num_train_epochs == d("epochs")
    assert args.max_grad_norm == d("max_grad_norm")
    assert args.warmup_steps == d("warmup_ratio")
    assert str(args.lr_scheduler_type.value) == d("scheduler")
    assert args.per_device_train_batch_size == d("batch_size")
    assert args.gradient_accumulation_steps == d("grad_accum")
    assert args.per_device_eval_batch_size == d("eval_batch_size")
    assert args.metric_for_best_model == d("metric")
    assert str(args.eval_strategy.value) == d("eval_every") == "epoch"
    assert str(args.optim.value) == "adamw_torch" and d("optim") == "adamw"
    q = training_arguments(specs["qlora"], tmp_path / "q", batch, 20, precision="fp32", cuda=False, processes=1)
    assert str(q.optim.value) == "adamw_bnb_8bit"  # QLoRA's optimizer, folded into train.optim by the grid


def test_peft_and_quantisation_configs_are_the_schema_defaults(specs, tiny_bert):
    from emogrid.models.adapters import TARGETS, build_peft_config
    from emogrid.models.loading import quantization_config

    model = _meta_model(tiny_bert)
    lora = build_peft_config(specs["lora"], model, "bert")
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (
        schema_default("lora.r"), schema_default("lora.alpha"), schema_default("lora.dropout"))
    assert not lora.use_dora and build_peft_config(specs["dora"], model, "bert").use_dora
    preset = sorted(TARGETS["bert"][schema_default("lora.targets")])
    assert sorted(lora.target_modules) == preset
    ada = build_peft_config(specs["adalora"], model, "bert", total_step=1000)
    assert (ada.init_r, ada.target_r, ada.deltaT, ada.tinit, ada.tfinal) == tuple(
        schema_default(f"adalora.{k}") for k in ("init_r", "target_r", "delta_t", "tinit", "tfinal"))
    assert ada.lora_alpha == schema_default("lora.alpha")
    assert build_peft_config(specs["full"], model, "bert") is None
    assert sorted(build_peft_config(specs["ia3"], model, "bert").target_modules) == sorted(
        TARGETS["bert"][schema_default("ia3.targets")])
    bnb = quantization_config(MethodSpec.from_spec(specs["qlora"]), specs["qlora"]["quant"], "bert")
    assert bnb.bnb_4bit_use_double_quant is schema_default("quant.double_quant")


@pytest.mark.parametrize("drop", ["train.lr", "lora.alpha", "data.threshold", "method.use_dora", "quant"])
def test_an_incomplete_spec_is_refused_naming_the_key(specs, drop, tmp_path):
    from emogrid.training.train import load_spec

    spec = json.loads(json.dumps(specs["qlora"]))
    section, _, key = drop.partition(".")
    if key:
        del spec[section][key]
    else:
        del spec[section]
    with pytest.raises(CellError, match=f"lacks {drop}"):
        check_spec(spec)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(CellError, match=f"lacks {drop}"):
        load_spec(f"@{tmp_path / 'spec.json'}")
