"""`emogrid grid`: validate a study config and list its cells (what Snakemake will run)."""

from __future__ import annotations

import json
import sys
from collections import Counter

from emogrid.cli_config import add_config_args, config_from_args, config_layers
from emogrid.study.grid import expand_cells, find_sweeps, subsets


def configure_parser(parser) -> None:
    add_config_args(parser)
    parser.add_argument("--json", action="store_true", help="print cells as JSON lines")
    parser.add_argument("--explain", action="store_true",
                        help="print the study's recipe instead: each value, where it was set (schema default, "
                             "a study file, --config, models.<m>, methods.<m>, ...) and what the paper states")


def run(args) -> int:
    config = config_from_args(args)
    if args.explain:
        print(explain(config, config_layers(args)))
        return 0
    cells = expand_cells(config)
    from emogrid.planning.precheck import target_problems

    problems = target_problems(cells)
    if problems:
        from emogrid.errors import ConfigError

        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
    if args.json:
        for cell in cells:
            sys.stdout.write(json.dumps({"cell_id": cell.cell_id, "axes": cell.axes}) + "\n")
        return 0
    for cell in cells:
        print(cell.cell_id)
    per_dataset = Counter(c.axes["dataset"] for c in cells)
    per_model = Counter(c.axes["model"] for c in cells)
    per_method = Counter(c.axes["method"] for c in cells)
    sweeps = find_sweeps(config)
    print(f"\n{len(cells)} training cells, {len(subsets(cells))} data subsets", file=sys.stderr)
    print("  per dataset: " + ", ".join(f"{k} {v}" for k, v in per_dataset.items()), file=sys.stderr)
    print("  per model:  " + ", ".join(f"{k} {v}" for k, v in per_model.items()), file=sys.stderr)
    print("  per method: " + ", ".join(f"{k} {v}" for k, v in per_method.items()), file=sys.stderr)
    if sweeps:
        print("  swept:      " + ", ".join(f"{k}={v}" for k, v in sweeps.items()), file=sys.stderr)
    targets = target_lines(cells)
    if targets:
        print("  targets:    " + "\n              ".join(targets), file=sys.stderr)
    return 0


def explain(config: dict, layers: list[tuple[str, dict]]) -> str:
    """The recipe as a table (key, value, cells, from, paper: stated / ours / impossible), then the
    paper's evidence per stated key and the reason per impossible one."""
    from emogrid.study.recipe import category_counts, recipe_rows

    rows = recipe_rows(config, layers)
    table = [("key", "value", "cells", "from", "paper")]
    table += [(r.key, r.text, r.scope or "all", r.source, r.category) for r in rows]
    widths = [min(max(len(row[i]) for row in table), 48) for i in range(4)]
    lines = [f"recipe of study {config['study']['name']}: {len(rows)} values, " + recipe_counts(rows)]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in table]
    evidence = [(r.config_key, r.stated) for r in rows if r.stated]
    if evidence:
        lines += ["", "stated by the paper:"] + [f"  {key}: {text}" for key, text in evidence]
    reasons = [(r.config_key, r.impossible) for r in rows if r.impossible]
    if reasons:
        lines += ["", "the paper's value cannot run here:"] + [f"  {key}: {text}" for key, text in reasons]
    assert sum(category_counts(rows).values()) == len(rows)
    return "\n".join(lines)


def recipe_counts(rows) -> str:
    """'31 stated by the paper (study.stated), 12 ours, 2 impossible (study.impossible)'."""
    from emogrid.study.recipe import category_counts

    counts = category_counts(rows)
    return (f"{counts['stated']} stated by the paper (study.stated), {counts['ours']} ours, "
            f"{counts['impossible']} impossible (study.impossible)")


def target_lines(cells) -> list[str]:
    """'qwen2.5-1.5b (qwen2): lora.targets qv = q_proj, v_proj' per model and target setting,
    resolved per family offline (local or bundled config.json; '?' when it would need the hub)."""
    from emogrid.models.adapters import TARGETS

    seen: dict[tuple, str] = {}
    for cell in cells:
        for section in ("lora", "ia3"):
            if section not in cell.spec:
                continue
            preset = str(cell.spec[section]["targets"])
            key = (cell.spec["model"]["name"], section, preset)
            if key in seen:
                continue
            family = _offline_family(cell.spec["model"])
            modules = (TARGETS.get(family, {}).get(preset) if family else None) or (
                None if preset in ("qv", "attention", "all-linear") else preset.split(","))
            seen[key] = (f"{key[0]} ({family or '?'}): {section}.targets {preset} = "
                         + (", ".join(modules) if modules else "resolved when the model loads"))
    return list(seen.values())


def _offline_family(model_spec: dict) -> str | None:
    from emogrid.planning.structure import bundled_config_name, config_family, model_config_dict
    from emogrid.study.model_registry import builtin_for

    if not model_spec.get("path") and not bundled_config_name(model_spec):
        entry = builtin_for(model_spec)  # a built-in without a bundled config: its registered family
        return entry.family if entry else None  # else it would need the hub: not in a dry run
    try:
        return config_family(model_config_dict(model_spec)[0])
    except Exception:  # noqa: BLE001 - a summary line must never break `emogrid grid`
        return None
