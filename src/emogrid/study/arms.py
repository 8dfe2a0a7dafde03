"""Arms: a study as a union of partial grids (`grid.arms`), not one full cross product.

An arm names some axes of the grid (`models`, `methods`, `datasets`, `labels`, `samples`,
`seeds`) and may narrow a swept parameter to some of its top-level values (`lora.targets:
[all-linear]`); every axis an arm leaves out is the top-level one, shared by all arms. The
study's cells are the union of the arms' cells, in arm order, each cell once.

`resolve_arms` runs in `finalize`: it writes every axis into every arm (so a config finalized
twice expands the same way) and sets the top-level axes to the union over the arms (what the
readers of `grid.models` & co. -- fetch, plan, downloads -- need to see). `arm_configs` gives
one config per arm for `emogrid.study.grid.expand_cells`.
"""

from __future__ import annotations

import copy

from emogrid.study.datasets import grid_datasets
from emogrid.study.schema import SWEEPABLE_SECTIONS

ARM_AXES = ("datasets", "labels", "samples", "models", "methods", "seeds")


def has_arms(config: dict) -> bool:
    return bool(config.get("grid", {}).get("arms"))


def resolve_arms(config: dict) -> list[str]:
    """Fill each arm's left-out axes from the top level, then set the top level to the union.

    Returns the problems (a swept key an arm narrows that the top level does not sweep, a value
    it does not sweep, an arm without models or methods); the config is changed in place.
    """
    grid = config["grid"]
    problems: list[str] = []
    for i, arm in enumerate(grid.get("arms") or []):
        where = f"grid.arms[{i}]"
        for axis in ARM_AXES:
            if axis in arm:
                continue
            if axis == "datasets":
                arm[axis] = grid_datasets(config)
            elif axis in grid:
                arm[axis] = copy.deepcopy(grid[axis])
            else:
                problems.append(f"{where}: names no {axis} and grid.{axis} is not set: give "
                                f"{axis}: [...] in the arm or at grid.{axis}")
        problems += _check_narrowed(config, arm, where)
    if problems or not grid.get("arms"):
        return problems
    for axis in ARM_AXES:
        union: list = []
        for arm in grid["arms"]:
            union += [v for v in arm[axis] if v not in union]
        grid[axis] = union
    return problems


def swept_keys(arm: dict) -> dict[str, list]:
    """The dotted swept keys an arm narrows ({'lora.targets': ['all-linear']})."""
    return {k: v for k, v in arm.items() if k not in ARM_AXES}


def _check_narrowed(config: dict, arm: dict, where: str) -> list[str]:
    problems = []
    for key, values in swept_keys(arm).items():
        section, _, leaf = key.partition(".")
        if section not in SWEEPABLE_SECTIONS or not leaf:
            continue  # not a swept key's name: the schema pass names it (unknown key)
        top = config[section].get(leaf)
        if not isinstance(top, list):
            problems.append(f"{where}.{key}: an arm can only narrow a parameter the study sweeps; "
                            f"{key} is {top!r} at the top level (sweep it there: {key}: [...])")
            continue
        outside = [v for v in values if v not in top]
        if outside:
            problems.append(f"{where}.{key}: {outside} not among the swept values {top}")
    return problems


def arm_configs(config: dict) -> list[dict]:
    """One config per arm: its axes as the grid, the swept keys it narrows narrowed; [config]
    when the study has no arms."""
    if not has_arms(config):
        return [config]
    out = []
    for arm in config["grid"]["arms"]:
        one = dict(config)
        one["grid"] = {axis: arm[axis] for axis in ARM_AXES}
        for key, values in swept_keys(arm).items():
            section, _, leaf = key.partition(".")
            one[section] = {**one[section], leaf: list(values)}  # several keys of a section narrow together
        out.append(one)
    return out
