"""`lora.head: lora`: LoRA on the classification head as well, the head still trained in full --
counts equal to peft's own, a cell that trains and saves it, and the Patil study's parameter
table printed by `emogrid plan` offline."""

from __future__ import annotations

import json

import pytest
import torch

from emogrid.errors import ConfigError
from tests.plan_specs import make_spec, peft_count_on_real_weights

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_head_lora_counts_equal_peft_on_a_tiny_model(tiny_models):
    """The planner's count (meta device) == peft's count of LoRA on the seven projections and on
    the head, built by peft alone, plus the head trained in full; == the formula r x (in + out)."""
    from peft import LoraConfig, get_peft_model

    from emogrid.models.loading import load_model
    from emogrid.planning.structure import count_cell

    path = tiny_models["llama"]
    spec = make_spec({"name": "tiny-llama", "id": None, "path": str(path)}, "lora-head", k=3, r=4)
    planned = count_cell(spec)["trainable"]
    model, _tok, _family = load_model(spec, 3)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=ALL_LINEAR + ["score"]))
    peft_lora, _total = peft_model.get_nb_trainable_parameters()
    head = 64 * 3  # hidden 64 x k 3, no bias: trained in full on top of its LoRA
    assert planned == peft_lora + head
    # tiny llama: hidden 64, MLP 128, 4 heads of 16 with 2 KV heads (k, v: 64 -> 32), 2 layers
    per_layer = (64 + 64) + 2 * (64 + 32) + (64 + 64) + 3 * (64 + 128)
    assert planned == 4 * (2 * per_layer + (64 + 3)) + head
    # the same on real weights, through the trainer's own code
    assert peft_count_on_real_weights(spec)[0] == planned


def test_head_lora_cell_trains_and_saves_the_whole_head(tiny_models, tiny_subset, tmp_path, one_torch_thread):
    """A cell with lora.head: lora trains LoRA on the head and the head itself; the saved adapter,
    loaded onto the untouched base model, reproduces the trained model's logits."""
    from conftest_train import cell_spec
    from peft import PeftModel

    from emogrid.models.loading import load_model
    from emogrid.study.grid import config_hash
    from emogrid.training import train
    from emogrid.training.provenance import now

    spec = cell_spec(tiny_models["llama"], "lora", "all-linear", epochs=1, save_adapter=True)
    spec["lora"]["head"] = "lora"
    spec["config_hash"] = config_hash(spec)
    seen = {}

    def on_model(model):
        seen["model"] = model
        seen["before"] = {n: p.detach().clone() for n, p in model.named_parameters()}

    train.run_cell(spec, tiny_subset, tmp_path, {"batch_size": 8, "grad_accum": 1}, now(), on_model=on_model)
    model = seen["model"]
    head = {n for n, p in model.named_parameters() if p.requires_grad and "score" in n}
    assert {n.split("score.", 1)[1] for n in head} == {
        "base_layer.modules_to_save.default.weight", "lora_A.default.weight", "lora_B.default.weight"}
    assert all(not torch.equal(seen["before"][n], model.get_parameter(n).detach()) for n in head)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["efficiency"]["trainable_params"] == model.get_nb_trainable_parameters()[0]

    base, tok, _ = load_model(spec, 3)
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    batch = tok(["I love this", "so sad today"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.allclose(model.eval()(**batch).logits, reloaded(**batch).logits, atol=1e-5)


def test_plan_prints_the_patil_parameter_table_offline(tmp_path, monkeypatch, capsys):
    """The paper's trainable-parameter table at r 8 and 512 (Llama-3-8B, 5 labels): all-linear
    with LoRA on the head, attention without; the bundled config, no hub."""
    from emogrid.cli import main
    from tests.helpers import REPO

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    small = tmp_path / "small.yaml"  # the study's own arms and model, two ranks, one method
    small.write_text("grid: {methods: [lora]}\nlora: {r: [8, 512], alpha: [16]}\n")
    monkeypatch.chdir(tmp_path)
    assert main(["plan", "--configfile", str(REPO / "studies" / "patil_llama3_sentiment5.yaml"),
                 "--configfile", str(small), "--no-sizing"]) == 0
    rows = {line.split(" | ")[2]: line.split(" | ")[5] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| llama-3-8b | lora |")}
    assert rows == {
        "lora.alpha=16+lora.head=full+lora.r=8+lora.targets=attention": "6,836,224",
        "lora.alpha=16+lora.head=lora+lora.r=8+lora.targets=all-linear": "21,024,808",
        "lora.alpha=16+lora.head=full+lora.r=512+lora.targets=attention": "436,228,096",
        "lora.alpha=16+lora.head=lora+lora.r=512+lora.targets=all-linear": "1,344,297,472",
    }


def test_a_wrong_head_value_names_the_key():
    from emogrid.study.config import finalize

    with pytest.raises(ConfigError, match=r"lora.head: expected one of full, lora, got 'adapter'"):
        finalize({"grid": {"models": ["m"], "methods": ["lora"]}, "models": {"m": {"id": "a/b"}},
                  "lora": {"head": "adapter"}})
