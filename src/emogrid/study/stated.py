"""`study.stated`: the recipe values a study's paper states, each with its evidence.

    study:
      stated:
        train.lr: "Sec. 4 (Baselines): full fine-tuning at 5e-5"
        models.llama-3-8b.id: "Sec. III: Llama3-8B"

A key is a dotted path into the study's (defaulted) config; names that hold dots themselves
(`models.qwen2.5-1.5b.id`) are matched against the config's own keys. The text says where in
the paper and what it says, in our words (never a quotation: the papers may not be copied).
Every recipe value not listed is ours (emogrid.study.recipe).

`study.impossible` names, the same way, the values whose paper value cannot be run -- here or
at all (data that is not public, hardware we do not have, a value the paper does not give and
cannot be recovered) -- each with why and what runs instead. A key may be in both: the paper
states it, and the study cannot follow it.
"""

from __future__ import annotations

from typing import Any

_MISSING = object()


def lookup(config: dict, dotted: str) -> Any:
    """The value at a dotted key, matching the longest existing key at each level; KeyError if absent."""
    parts = dotted.split(".")
    node: Any = config
    i = 0
    while i < len(parts):
        if not isinstance(node, dict):
            raise KeyError(dotted)
        for j in range(len(parts), i, -1):  # longest first: 'qwen2.5-1.5b' before 'qwen2'
            key = ".".join(parts[i:j])
            if key in node:
                node, i = node[key], j
                break
        else:
            raise KeyError(dotted)
    return node


def stated(config: dict) -> dict[str, str]:
    return dict((config.get("study") or {}).get("stated") or {})


def impossible(config: dict) -> dict[str, str]:
    return dict((config.get("study") or {}).get("impossible") or {})


def check_stated(config: dict) -> list[str]:
    """Problems of `study.stated` and `study.impossible`: a key the config does not have, or an empty text."""
    problems = []
    for mapping, entries, wanted in (("stated", stated(config), "where the paper states it and what it says"),
                                     ("impossible", impossible(config), "why the paper's value cannot run here")):
        for key, text in entries.items():
            try:
                lookup(config, key)
            except KeyError:
                problems.append(f"study.{mapping}.{key}: the config has no key {key} (a {mapping} key is a dotted "
                                "config key, e.g. train.lr, lora.targets, models.<name>.id)")
            if not isinstance(text, str) or not text.strip():
                problems.append(f"study.{mapping}.{key}: expected {wanted}, got {text!r}")
    return problems
