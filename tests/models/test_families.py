"""Model families added with datasets as an axis: DistilBERT, RoBERTa, DeBERTa-v2/v3,
ModernBERT, Gemma 1 and Gemma 2, as tiny random models through full fine-tuning, LoRA and
QLoRA (the same checks as the original five in test_train), their target presets, and an
unknown architecture (ALBERT) that works with explicit targets and fails clearly without."""

from __future__ import annotations

import json

import pytest
import torch
from conftest_train import cell_spec
from tiny_models import NEW_FAMILIES, build_tiny_model

from emogrid.errors import CellError
from emogrid.models.adapters import TARGET_PRESETS, TARGETS, apply_method, resolve_targets
from emogrid.models.loading import GENERIC, HEAD_MODULES, detect_family, head_modules, load_model
from emogrid.study.grid import config_hash
from emogrid.training import train
from emogrid.training.provenance import now

MODEL_TYPES = {"distilbert": "distilbert", "roberta": "roberta", "deberta-v2": "deberta-v2",
               "modernbert": "modernbert", "gemma": "gemma", "gemma2": "gemma2"}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here: one torch thread (conftest_train.one_torch_thread)."""


def test_family_detection():
    for model_type, family in MODEL_TYPES.items():
        assert detect_family(model_type) == family
    assert detect_family("xlm-roberta") == "roberta" and detect_family("albert") == GENERIC
    for family in NEW_FAMILIES:
        assert set(TARGETS[family]) == set(TARGET_PRESETS)


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_target_presets_hit_real_modules(tiny_models, family):
    model, _tok, fam = load_model({"model": {"id": None, "path": str(tiny_models[family])},
                                   "method": {"peft": "lora", "quantize": "none"}, "train": {"precision": "auto"}}, 3)
    assert fam == family
    names = [n for n, _ in model.named_modules()]
    sizes = {}
    for preset in TARGET_PRESETS:
        targets = resolve_targets(model, family, preset)
        hit = [n for n in names if any(n == t or n.endswith("." + t) for t in targets)]
        assert len(hit) >= 2, (preset, hit)  # two layers at least
        assert not any(n.split(".")[0] in head_modules(family) or ".".join(n.split(".")[:1]) == "score"
                       for n in hit), hit  # never the head
        sizes[preset] = len(hit)
    assert sizes["qv"] <= sizes["attention"] < sizes["all-linear"]


@pytest.mark.parametrize("family", NEW_FAMILIES)
@pytest.mark.parametrize("method", ["full", "lora", "qlora"])
def test_new_family_trains(tiny_models, tiny_subset, tmp_path, family, method):
    spec = cell_spec(tiny_models[family], method, "attention")
    spec["config_hash"] = config_hash(spec)
    seen = {}

    def on_model(model):
        seen["model"] = model
        seen["before"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        seen["trainable"] = {n for n, p in model.named_parameters() if p.requires_grad}

    train.run_cell(spec, tiny_subset, tmp_path, {"batch_size": 8, "grad_accum": 1}, now(), on_model=on_model)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["status"] == "ok" and 0.0 <= m["test"]["accuracy"] <= 1.0
    assert sum(map(sum, m["test"]["confusion_matrix"])) == m["test"]["n"]
    model, before, trainable = seen["model"], seen["before"], seen["trainable"]
    after = dict(model.named_parameters())
    packed = {n for n, p in after.items() if type(p).__name__ == "Params4bit"}
    changed = {n for n in before if n not in packed and not torch.equal(before[n], after[n].detach())}
    assert not (changed & (set(before) - trainable - packed)), "frozen parameters changed"
    if method == "full":
        assert m["efficiency"]["trainable_params"] == m["efficiency"]["total_params"]
    else:
        assert (m["efficiency"]["trainable_params"], m["efficiency"]["total_params"]) == \
            tuple(model.get_nb_trainable_parameters())
        heads = head_modules(family)
        for head in heads:  # every head module trains in full
            assert any(f"{head}.modules_to_save" in n for n in trainable), (head, sorted(trainable)[:8])
        assert any("lora_A" in n for n in changed)
    if method == "qlora":
        assert packed, "QLoRA base weights are 4-bit"


@pytest.fixture(scope="module")
def tiny_albert(tmp_path_factory):
    return build_tiny_model("albert", tmp_path_factory.mktemp("albert") / "albert")


def test_unknown_architecture_needs_explicit_targets(tiny_albert, tiny_subset, tmp_path):
    spec = cell_spec(tiny_albert, "lora", "attention")
    model, _tok, family = load_model(spec, 3)
    assert family == GENERIC and type(model).__name__ == "AlbertForSequenceClassification"
    with pytest.raises(CellError, match=r"architecture 'albert' is not a known family.*known model_types: .*"
                                        r"deberta-v2.*modernbert") as info:
        apply_method(model, spec, family)
    assert 'lora.targets: "query,value"' in str(info.value)
    spec = cell_spec(tiny_albert, "lora", "query,value")
    spec["config_hash"] = config_hash(spec)
    train.run_cell(spec, tiny_subset, tmp_path, {"batch_size": 8, "grad_accum": 1}, now())
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["status"] == "ok" and m["efficiency"]["trainable_params"] < m["efficiency"]["total_params"]


def test_head_modules_cover_every_new_encoder():
    for family in ("distilbert", "roberta", "deberta-v2", "modernbert"):
        assert family in HEAD_MODULES
    for family in ("gemma", "gemma2"):
        assert head_modules(family) == ("score",)
