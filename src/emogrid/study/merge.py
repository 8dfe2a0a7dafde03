"""Snakemake's rule for layering configs, used for config files and dataset definitions alike."""

from __future__ import annotations

import copy


def deep_merge(base: dict, overlay: dict) -> dict:
    """Snakemake's rule: nested mappings merge key by key; anything else replaces."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
