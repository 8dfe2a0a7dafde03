"""emogrid.planning.structure: exact parameter counts (meta device == peft on real weights),
pinned counts of the default models, and a structure cache keyed by what shapes the model."""

from __future__ import annotations

import pytest

from emogrid.package_data import bundled_model_config
from emogrid.planning import structure
from emogrid.planning.structure import count_cell
from tests.plan_specs import METHODS, make_spec, peft_count_on_real_weights


@pytest.mark.parametrize("method", sorted(METHODS))
def test_counts_equal_peft_on_tiny_models(tiny_models, method):
    for family, path in tiny_models.items():
        spec = make_spec({"name": f"tiny-{family}", "id": None, "path": str(path)}, method)
        planned = count_cell(spec)
        real = peft_count_on_real_weights(spec)
        assert (planned["trainable"], planned["total"]) == real, (family, method)


def test_head_width_is_adjusted_exactly(tiny_models):
    """Counts cached at one k and adjusted for another equal a fresh build at that k."""
    for family, path in tiny_models.items():
        model = {"name": f"tiny-{family}", "id": None, "path": str(path)}
        structure._count_cache.clear()
        count_cell(make_spec(model, "lora", k=2))
        adjusted = count_cell(make_spec(model, "lora", k=7))
        assert (adjusted["trainable"], adjusted["total"]) == peft_count_on_real_weights(make_spec(model, "lora", k=7))




# Exact counts of the default models (bundled configs, meta device, k=4, transformers 5.23 / peft 0.21.2).
PINNED = {
    # model: (full total, LoRA r=16 attention trainable, LoRA total)
    "qwen2.5-1.5b": (1_543_720_448, 4_364_288, 1_548_084_736),
    "llama-3.2-1b": (1_235_822_592, 3_416_064, 1_239_238_656),
    "gpt2-xl": (1_557_617_600, 7_379_200, 1_564_996_800),
    "gemma-3-1b": (999_890_560, 2_986_496, 1_002_877_056),
    "bert-base-uncased": (109_485_316, 1_773_316, 111_258_632),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_default_models_pinned_counts(name):
    full_total, lora_trainable, lora_total = PINNED[name]
    model = {"name": name, "id": None, "path": None}
    full = count_cell(make_spec(model, "full", k=4))
    assert full["trainable"] == full["total"] == full_total
    lora = count_cell(make_spec(model, "lora", k=4, r=16))
    assert (lora["trainable"], lora["total"]) == (lora_trainable, lora_total)


def test_bundled_configs_match_published_sizes():
    """Backbone sizes (no head) as published: Qwen2.5-1.5B 1.54B, Llama-3.2-1B 1.24B, ..."""
    import torch
    from transformers import AutoConfig, AutoModel

    expected = {"qwen2.5-1.5b": 1_543_714_304 - 151_936 * 1536,  # 1.54B incl. tied embedding
                "llama-3.2-1b": 1_235_814_400 - 0, "gpt2-xl": 1_557_611_200, "gemma-3-1b": 999_885_952,
                "bert-base-uncased": 109_482_240,
                "llama-3-8b": 8_030_261_248 - 128_256 * 4096}  # 8.03B with its untied lm_head
    for name in expected:
        cfg = bundled_model_config(name)
        with torch.device("meta"):
            m = AutoModel.from_config(AutoConfig.for_model(**cfg))
        n = sum(p.numel() for p in m.parameters())
        if name == "qwen2.5-1.5b":  # base model without the (tied) lm_head: embedding counted once
            assert n == 1_543_714_304
        elif name == "llama-3.2-1b":
            assert n == 1_235_814_400
        else:
            assert n == expected[name]




def _counted(spec: dict, monkeypatch) -> tuple[dict, int]:
    """count_cell(spec) and how many times the structure was measured (not taken from the cache)."""
    calls = []
    measure = structure._measure_structure
    monkeypatch.setattr(structure, "_measure_structure", lambda *a: calls.append(1) or measure(*a))
    return count_cell(spec), len(calls)


@pytest.mark.parametrize("method, section, key, value", [
    ("lora", "lora", "r", 8),
    ("lora", "lora", "targets", "all-linear"),
    ("dora", "lora", "r", 8),
    ("ia3", "ia3", "targets", "all-linear"),
    ("adalora", "adalora", "init_r", 8),
    ("lora-nohead", "train", "train_head", True),
])
def test_structure_changing_keys_get_their_own_count(tiny_models, monkeypatch, method, section, key, value):
    """The structure cache is keyed by the peft config the trainer builds: changing a key that
    shapes the adapters gives a fresh count (equal to peft's), never the cached one."""
    model = {"name": "tiny-llama", "id": None, "path": str(tiny_models["llama"])}
    structure._count_cache.clear()
    spec = make_spec(model, method)
    first, measured = _counted(spec, monkeypatch)
    assert measured == 1
    changed = make_spec(model, method)
    changed[section] = {**changed[section], key: value}
    second, measured = _counted(changed, monkeypatch)
    assert measured == 1, f"{section}.{key} changes the structure but the cached count was reused"
    assert second["trainable"] != first["trainable"]
    assert (second["trainable"], second["total"]) == peft_count_on_real_weights(changed)


@pytest.mark.parametrize("section, key, value", [
    ("train", "lr", 1e-3),
    ("train", "batch_size", 16),
    ("lora", "alpha", 64),
    ("adalora", "tinit", 5),
])
def test_settings_that_shape_nothing_reuse_the_cached_count(tiny_models, monkeypatch, section, key, value):
    model = {"name": "tiny-llama", "id": None, "path": str(tiny_models["llama"])}
    method = "adalora" if section == "adalora" else "lora"
    structure._count_cache.clear()
    first, measured = _counted(make_spec(model, method), monkeypatch)
    assert measured == 1
    changed = make_spec(model, method)
    changed[section] = {**changed[section], key: value}
    second, measured = _counted(changed, monkeypatch)
    assert measured == 0 and second == first
