"""The `tune:` section of a study: what it may name, checked before anything expands.

The schema checks the shape (`tune.params` maps dotted keys to lists, `per`, `seeds`, `metric`,
`halving`); `tune_problems` checks what a schema can't: each key is a sweepable leaf of a
section a grid method reads, each value is valid for that leaf (the same schema entries that
validate the top level), a key is tuned or swept by the grid but not both, and `tune.methods`
names methods of the grid. Light (no grid expansion): `emogrid.study.semantics` calls it.
"""

from __future__ import annotations

import difflib

from emogrid.study.schema import SWEEPABLE_SECTIONS, check_overrides

# settings that say what a cell reports, not how it trains: nothing to choose between
NOT_TUNABLE = ("train.metric", "train.save_adapter", "train.report_to")
DEFAULT_PER = ("dataset", "model", "method")


def tune_section(config: dict) -> dict | None:
    """The study's `tune:` section, None when it has none (then nothing is tuned)."""
    return config.get("tune") or None


def method_params(tune: dict, method: str) -> dict[str, list]:
    """{dotted key: values} searched for one method: `tune.params`, with the lists that
    `tune.methods.<method>` names replacing those of the same keys."""
    return {**tune["params"], **(tune.get("methods") or {}).get(method, {})}


def tune_problems(config: dict) -> list[str]:
    """Every problem of the `tune:` section as one line naming its key ([] when valid)."""
    tune = tune_section(config)
    if tune is None:
        return []
    problems: list[str] = []
    grid_methods = list(config["grid"]["methods"])
    methods = config.get("methods") or {}
    for where, params in [("tune.params", tune["params"])] + [
            (f"tune.methods.{m}", p) for m, p in (tune.get("methods") or {}).items()]:
        for key, values in params.items():
            problems += _key_problems(config, where, key, values)
    for name in tune.get("methods") or {}:
        if name not in grid_methods:
            close = difflib.get_close_matches(name, grid_methods, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"tune.methods.{name}: not a method of grid.methods{hint} "
                            f"({', '.join(grid_methods)})")
    if tune.get("methods") and "method" not in tune["per"]:
        problems.append("tune.methods: per-method search lists need 'method' in tune.per "
                        f"(got {list(tune['per'])}): methods that share one choice must search the same values")
    readers = {name: _sections_of(methods.get(name, {}), name) for name in grid_methods}
    for key in tune["params"]:
        section = key.split(".", 1)[0]
        if section in SWEEPABLE_SECTIONS and not any(section in s for s in readers.values()):
            problems.append(f"tune.params.{key}: none of grid.methods ({', '.join(grid_methods)}) "
                            f"reads the {section} section, so there is nothing to tune")
    return problems


def _key_problems(config: dict, where: str, key: str, values: list) -> list[str]:
    section, _, leaf = key.partition(".")
    if section not in SWEEPABLE_SECTIONS:
        close = difflib.get_close_matches(section, SWEEPABLE_SECTIONS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return [f"{where}.{key}: '{section}' is not a section that can be tuned{hint}; "
                f"tunable sections: {', '.join(SWEEPABLE_SECTIONS)}"]
    if key in NOT_TUNABLE:
        return [f"{where}.{key}: says what a cell reports, not how it trains; it cannot be tuned"]
    problems: list[str] = []
    for value in values:
        if isinstance(value, list):
            problems.append(f"{where}.{key}: expected a list of single values, got the list {value!r} inside it")
            continue
        for msg in check_overrides(where, {section: {leaf: value}}):
            if msg not in problems:
                problems.append(msg)
    if isinstance(config.get(section, {}).get(leaf), list):
        problems.append(f"{where}.{key}: also swept by the grid ({key}: {config[section][leaf]}); "
                        "a key is either a grid axis (every value reported) or tuned (one value chosen), not both")
    return problems


def _sections_of(entry: dict, name: str) -> tuple[str, ...]:
    """The config sections a defined method reads (its built-in base, or its own peft)."""
    from emogrid.study.methods import BUILTIN_METHODS, config_sections

    base = BUILTIN_METHODS.get(entry.get("base", name))
    if "peft" in entry or base is None:
        return config_sections(entry.get("peft", "full"), entry.get("quantize", "none"))
    return base.sections
