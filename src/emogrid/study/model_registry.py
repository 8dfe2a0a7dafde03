"""Built-in models: a name a study may put in `grid.models` without defining it.

Each entry says which hub checkpoint the name stands for, its family (the module names,
head and target presets of `emogrid.models`) and, where one ships, its bundled architecture
config (`emogrid/model_configs/<stem>.json`: offline planning and target checks). A study
either names a built-in or defines the model itself under `models:`; an entry named like a
built-in starts from it and overrides its keys (e.g. `llama-3-8b: {resources: {mem_mb: 96000}}`
or `{path: /local/copy}`), as `datasets:` entries do for the built-in datasets.

Families are `emogrid.models.loading` family names (tests/study/test_model_registry.py checks them
against the bundled configs); hub ids and model types are from each model's card and
config.json on the Hugging Face hub.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass


@dataclass(frozen=True)
class BuiltinModel:
    id: str                          # hub id
    family: str                      # emogrid.models.loading family of its config.model_type
    config: str | None = None        # bundled config stem (emogrid/model_configs/), None = from the hub
    aliases: tuple[str, ...] = ()    # other hub ids with the same architecture config
    description: str = ""


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "qwen2.5-1.5b": BuiltinModel("Qwen/Qwen2.5-1.5B", "qwen2", "qwen2.5-1.5b", ("Qwen/Qwen2.5-1.5B-Instruct",),
                                 "Qwen2.5, 1.5B"),
    "llama-3.2-1b": BuiltinModel("meta-llama/Llama-3.2-1B", "llama", "llama-3.2-1b",
                                 ("meta-llama/Llama-3.2-1B-Instruct",), "Llama 3.2, 1B"),
    "gpt2-xl": BuiltinModel("openai-community/gpt2-xl", "gpt2", "gpt2-xl", ("gpt2-xl",), "GPT-2 XL, 1.5B"),
    "gemma-3-1b": BuiltinModel("google/gemma-3-1b-pt", "gemma3", "gemma-3-1b", ("google/gemma-3-1b-it",),
                               "Gemma 3, 1B, pretrained"),
    "bert-base": BuiltinModel("google-bert/bert-base-uncased", "bert", "bert-base-uncased",
                              ("bert-base-uncased",), "BERT base, uncased"),
    "distilbert-base": BuiltinModel("distilbert/distilbert-base-uncased", "distilbert",
                                    description="DistilBERT base, uncased"),
    # its config is written from the published architecture (hidden 4096, 32 layers, 32 heads, 8 KV
    # heads, MLP 14336, vocabulary 128256, rope theta 500000, 8192 positions): the Patil and Nishat
    # studies plan offline, the gated checkpoint is never asked for
    "llama-3-8b": BuiltinModel("meta-llama/Meta-Llama-3-8B", "llama", "llama-3-8b",
                               ("meta-llama/Meta-Llama-3-8B-Instruct",), "Llama 3, 8B, pretrained"),
    "gemma-1.1-2b-it": BuiltinModel("google/gemma-1.1-2b-it", "gemma", description="Gemma 1.1, 2B, instruct"),
    # Qwen2 architecture (config.model_type qwen2), an embedding model of the MTEB leaderboard
    "gte-qwen1.5-7b": BuiltinModel("Alibaba-NLP/gte-Qwen1.5-7B-instruct", "qwen2",
                                   description="gte-Qwen1.5, 7B, instruct (embedding model)"),
}


def builtin_entry(name: str) -> dict:
    """The `models.<name>` block a built-in stands for."""
    return {"id": BUILTIN_MODELS[name].id}


def named_models(config: dict) -> list[str]:
    """The model names the study's grid uses (grid.models and every grid.arms[*].models)."""
    grid = config.get("grid")
    if not isinstance(grid, dict):
        return []
    lists = [grid.get("models")] + [arm.get("models") for arm in grid.get("arms") or [] if isinstance(arm, dict)]
    names = [m for models in lists if isinstance(models, list) for m in models if isinstance(m, str)]
    return list(dict.fromkeys(names))


def resolve_models(config: dict) -> dict:
    """`models:` completed with the built-ins the grid names (a study's own keys win).

    Idempotent, and leaves a malformed `models:` / `grid:` to the schema's messages."""
    models = config.get("models", {})
    if not isinstance(models, dict):
        return config
    for name in named_models(config):
        if name not in BUILTIN_MODELS:
            continue
        own = models.get(name)
        if own is None or isinstance(own, dict):
            models[name] = {**builtin_entry(name), **copy.deepcopy(own or {})}
    if models:
        config["models"] = models
    return config


def builtin_for(model_spec: dict) -> BuiltinModel | None:
    """The built-in a cell's model block is: by hub id, or, where it names no id, by its name
    (the built-in's, or its bundled config's)."""
    model_id, model_name = model_spec.get("id"), model_spec.get("name")
    for name, entry in BUILTIN_MODELS.items():
        if model_id and model_id in (entry.id, *entry.aliases):
            return entry
        if not model_id and model_name in (name, entry.config):
            return entry
    return None


def bundled_configs() -> dict[str, tuple[str, ...]]:
    """Bundled config stem -> the hub ids it stands for."""
    return {e.config: (e.id, *e.aliases) for e in BUILTIN_MODELS.values() if e.config}
