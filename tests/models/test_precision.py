"""What trains is fp32; only a frozen base may be bf16 (and never from the checkpoint by accident)."""

from __future__ import annotations

import json

import pytest
import torch
from test_models import spec_for

from emogrid.models.adapters import apply_method
from emogrid.models.loading import base_weights_dtype, load_model, upcast_trainable


@pytest.fixture
def bf16_llama(tiny_models, tmp_path):
    """The tiny Llama re-saved in bf16, like the Llama/Qwen/Gemma hub checkpoints."""
    src = tiny_models["llama"]
    dst = tmp_path / "llama-bf16"
    model, tokenizer, _ = load_model(spec_for(src, peft="full"), 3)
    model.to(torch.bfloat16).save_pretrained(dst)
    tokenizer.save_pretrained(dst)
    assert json.loads((dst / "config.json").read_text()).get("dtype") == "bfloat16"
    return dst


@pytest.mark.parametrize("peft, precision, cuda, expected", [
    ("full", "bf16", True, "fp32"),      # full fine-tuning keeps fp32 master weights
    ("lora", "bf16", True, "bf16"),      # frozen base may be bf16
    ("lora", "auto", True, "bf16"),
    ("lora", "auto", False, "fp32"),     # CPU: auto means fp32
    ("ia3", "fp32", True, "fp32"),
])
def test_base_weights_dtype_rule(peft, precision, cuda, expected):
    spec = {"method": {"peft": peft}, "train": {"precision": precision}}
    assert base_weights_dtype(spec, cuda=cuda) == expected


def test_bf16_checkpoint_loads_fp32_for_full_finetuning_on_cpu(bf16_llama):
    spec = spec_for(bf16_llama, peft="full")
    spec["train"]["precision"] = "auto"
    model, _, _ = load_model(spec, 3)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_lora_on_bf16_base_trains_fp32_tensors(bf16_llama):
    spec = spec_for(bf16_llama, peft="lora")
    spec["train"]["precision"] = "bf16"
    model, _, family = load_model(spec, 3)
    model = apply_method(model, spec, family)
    upcast_trainable(model)
    trainable = {p.dtype for p in model.parameters() if p.requires_grad}
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert trainable == {torch.float32} and frozen == {torch.bfloat16}
    assert model.config.use_cache is False  # no KV cache during classification eval
