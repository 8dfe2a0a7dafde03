"""emogrid.models.loading / emogrid.models.adapters on tiny random models of every family."""

from __future__ import annotations

import json

import pytest
import torch

from emogrid.errors import CellError
from emogrid.models.adapters import TARGETS, apply_method, build_peft_config, count_parameters, resolve_targets
from emogrid.models.loading import DECODER_FAMILIES, detect_family, load_model, load_tokenizer

FAMILIES = ("llama", "qwen2", "gpt2", "gemma3", "bert")


def spec_for(path, peft="lora", quantize="none", targets="attention", **model):
    return {"model": {"id": None, "path": str(path), **model},
            "method": {"name": peft, "peft": peft, "quantize": quantize, "use_dora": False},
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "targets": targets, "head": "full"},
            "ia3": {"targets": targets}, "quant": {"double_quant": True, "compute_dtype": "auto"},
            "train": {"train_head": True, "precision": "auto"}}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here: one torch thread (conftest_train.one_torch_thread)."""


def test_detect_family():
    assert detect_family("gemma3_text") == "gemma3" and detect_family("electra") == "bert"
    # RoBERTa has its own family now (no pooler: its head is classifier only); any other
    # architecture is generic and needs explicit targets (tests/models/test_families.py)
    assert detect_family("roberta") == "roberta" and detect_family("t5") == "generic"


@pytest.mark.parametrize("family", FAMILIES)
def test_load_every_family_and_pad_from_last_real_token(tiny_models, family):
    model, tok, fam = load_model(spec_for(tiny_models[family]), 3)
    assert fam == family
    assert model.config.num_labels == 3
    if family == "gemma3":
        assert type(model).__name__ == "Gemma3TextForSequenceClassification"
    if family in DECODER_FAMILIES:
        assert tok.pad_token is not None and model.config.pad_token_id == tok.pad_token_id
    model.eval()
    short, long = "so happy", "this is a much longer comment about being so happy today"
    with torch.no_grad():
        batch = tok([short, long], padding=True, return_tensors="pt")
        alone = tok([short], return_tensors="pt")
        assert batch["attention_mask"][0].sum() < batch["attention_mask"][1].sum()  # really padded
        # Padding must not change the prediction: decoders read the last real token.
        assert torch.allclose(model(**batch).logits[0], model(**alone).logits[0], atol=1e-5)


def test_tokenizer_trap_qwen2_uses_saved_tokenizer(tiny_models):
    from tokenizers import Tokenizer

    path = tiny_models["qwen2"]
    assert json.loads((path / "config.json").read_text())["model_type"] == "qwen2"
    tok = load_tokenizer(path, "qwen2")
    saved = Tokenizer.from_file(str(path / "tokenizer.json"))
    text = "I can't believe this happened, thank you so much!"
    assert tok(text)["input_ids"] == saved.encode(text).ids
    assert len(tok) == saved.get_vocab_size()


def test_path_wins_over_id_and_bad_path_is_a_cell_error(tiny_models, tmp_path):
    model, _, fam = load_model(spec_for(tiny_models["bert"], id="no-such/model-anywhere"), 2)
    assert fam == "bert"
    with pytest.raises(CellError, match="config.json"):
        load_model(spec_for(tmp_path / "missing"), 2)


def test_trust_remote_code_off_by_default(tiny_models, monkeypatch):
    import transformers

    seen = {}
    real = transformers.AutoConfig.from_pretrained

    def spy(*args, **kwargs):
        seen["trust"] = kwargs.get("trust_remote_code")
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", spy)
    load_model(spec_for(tiny_models["llama"]), 2)
    assert seen["trust"] is False


def test_nf4_keeps_head_and_pooler_unquantised(tiny_models):
    import bitsandbytes as bnb

    model, _, _ = load_model(spec_for(tiny_models["bert"], quantize="nf4"), 4)
    modules = dict(model.named_modules())
    assert isinstance(modules["bert.encoder.layer.0.attention.self.query"], bnb.nn.Linear4bit)
    for name in ("classifier", "bert.pooler.dense"):
        assert type(modules[name]) is torch.nn.Linear, name
    peft_model = apply_method(model, spec_for(tiny_models["bert"], quantize="nf4"), "bert")
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert any("classifier.modules_to_save" in n for n in trainable)
    assert any("pooler.modules_to_save" in n for n in trainable)


@pytest.mark.parametrize("family", FAMILIES)
def test_resolve_targets(tiny_models, family):
    model, _, _ = load_model(spec_for(tiny_models[family]), 2)
    names = [n for n, _ in model.named_modules()]
    for target_set in ("qv", "attention", "all-linear"):
        targets = resolve_targets(model, family, target_set)
        assert targets == TARGETS[family][target_set]
        hit = [n for n in names if any(n == t or n.endswith("." + t) for t in targets)]
        assert len(hit) >= 2 * len(targets) // (2 if family == "gpt2" else 1)
        assert not any("classifier" in n or "score" in n or "pooler" in n for n in hit)
    assert len(resolve_targets(model, family, "attention")) < len(resolve_targets(model, family, "all-linear"))
    explicit = TARGETS[family]["attention"][0]
    assert resolve_targets(model, family, f" {explicit} ,") == [explicit]
    with pytest.raises(CellError, match="not found"):
        resolve_targets(model, family, "no_such_proj")


def test_full_on_quantised_model_is_refused(tiny_models):
    spec = spec_for(tiny_models["llama"], peft="full", quantize="nf4")
    model, _, fam = load_model(spec_for(tiny_models["llama"]), 2)
    with pytest.raises(CellError, match="full fine-tuning"):
        apply_method(model, spec, fam)


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_meta_device_counts_match_real_model(tiny_models, family):
    """The planner builds models on the meta device; counts must match a real load."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    spec = spec_for(tiny_models[family], targets="all-linear")
    real, _, _ = load_model(spec, 5)
    expected = count_parameters(apply_method(real, spec, family))
    config = AutoConfig.from_pretrained(tiny_models[family], num_labels=5)
    with torch.device("meta"):
        meta = AutoModelForSequenceClassification.from_config(config)
    assert build_peft_config(spec, meta, family).target_modules
    assert count_parameters(apply_method(meta, spec, family)) == expected


def test_adapters_import_is_cheap_and_side_effect_free():
    import subprocess
    import sys

    code = (
        "import sys, emogrid.models.adapters, emogrid.models.loading; "
        "assert 'peft' not in sys.modules and 'torch' not in sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


QV_MODULES = {"llama": {"q_proj", "v_proj"}, "qwen2": {"q_proj", "v_proj"}, "gemma3": {"q_proj", "v_proj"},
              "gpt2": {"c_attn"}, "bert": {"query", "value"}}


@pytest.mark.parametrize("family", FAMILIES)
def test_qv_preset_adapts_only_query_and_value(tiny_models, family):
    """`qv` = the GoEmotions grid paper's targets: q_proj/v_proj, GPT-2's fused c_attn, BERT's query/value."""
    counts = {}
    for preset in ("qv", "attention"):
        model, _, _ = load_model(spec_for(tiny_models[family], targets=preset), 2)
        peft_model = apply_method(model, spec_for(tiny_models[family], targets=preset), family)
        adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in peft_model.named_parameters()
                   if ".lora_A" in n}
        if preset == "qv":
            assert adapted == QV_MODULES[family]
        counts[preset] = count_parameters(peft_model)[0]
    assert counts["qv"] < counts["attention"]
