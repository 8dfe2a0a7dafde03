"""Everything checked before a study runs, reported in one message.

`check_study` runs every check on a merged config and raises one ConfigError listing every
problem it found, so a file is fixed in one pass instead of error by error:

- the schema and the semantic checks (emogrid.study.config; report.reference included:
  emogrid.study.reference);
- each dataset's source: files, columns (emogrid.data.checks.sources_problems);
- each cell's train.batch_size against its GPU count: N processes each train batch_size / N
  (emogrid.planning.precheck.gpu_batch_problems);
- `deep` (the Snakefile's main process, before anything is scheduled): `lora.targets` /
  `ia3.targets` against each model's modules with a did-you-mean (emogrid.planning.precheck),
  and each local table read and drawn into every subset the grid asks for, with the data
  step's own messages (emogrid.data.checks.subset_problems).

A check that cannot run on a config the schema already rejected is skipped: the schema's
messages stand for it; except the target check, which then runs on the config without what was
rejected (each rejected key back to its default, grid names that name nothing left out), so a
misspelt `lora.targets` comes in the same message as a grid error (`_targets_despite`).
Returns the finished config and warnings: reference rows that map to no
cell of the study.
"""

from __future__ import annotations

# what a later check may raise on a config an earlier one rejected (a missing section, a wrong type)
_BROKEN = (KeyError, TypeError, AttributeError, ValueError, IndexError)


def check_study(raw: dict, *, deep: bool = False) -> tuple[dict, list[str]]:
    """(config, warnings) of a merged raw config; one ConfigError with every problem."""
    from emogrid.data.checks import sources_problems, subset_problems
    from emogrid.errors import ConfigError, EmogridError
    from emogrid.study.config import config_problems, format_problems
    from emogrid.study.grid import expand_cells, subsets
    from emogrid.study.reference import unmatched_rows

    config, problems = config_problems(raw)
    warnings: list[str] = []
    targets_checked = False
    try:
        source = sources_problems(config)
        problems += source
        cells = expand_cells(config)
        from emogrid.planning.precheck import gpu_batch_problems

        problems += gpu_batch_problems(config, cells)
        if deep:
            from emogrid.planning.precheck import target_problems
            from emogrid.study.tuning import Tuning

            # tuning cells (tune:) take other values of the tuned keys (lora.targets among them)
            # and train on the subsets of tune.seeds
            tuned = Tuning(config).all_cells()
            problems += target_problems(cells + tuned)
            targets_checked = bool(cells)  # an emptied grid axis leaves no cell to check
            broken = tuple(name for name in {c.axes["dataset"] for c in cells}
                           if any(f"datasets.{name}" in p or f"dataset '{name}'" in p for p in source))
            problems += subset_problems(config, subsets(cells + tuned), skip=broken)
        note = unmatched_rows(config, cells)
        if note:
            warnings.append(note)
    except EmogridError as err:
        problems.append(str(err.args[0]))
    except _BROKEN:
        if not problems:
            raise
    if deep and problems and not targets_checked:
        problems += _targets_despite(raw, config)
    if problems:
        raise ConfigError(format_problems(list(dict.fromkeys(problems))))
    return config, warnings


def _targets_despite(raw: dict, config: dict) -> list[str]:
    """`lora.targets` / `ia3.targets` problems of a config the earlier checks rejected in a way
    that stopped the cells from expanding (a grid error, an unknown method): checked on the
    config without what was rejected (`_checkable`), so they come in the same message. Only the
    targets: the other checks would judge defaults the user did not write."""
    from emogrid.errors import EmogridError
    from emogrid.planning.precheck import target_problems
    from emogrid.study.grid import expand_cells
    from emogrid.study.tuning import Tuning

    checked = _checkable(raw, config)
    if checked is None:
        return []
    try:
        return target_problems(expand_cells(checked) + Tuning(checked).all_cells())
    except (EmogridError, *_BROKEN):
        return []


def _checkable(raw: dict, config: dict) -> dict | None:
    """The config without what the schema rejected and without grid models/methods that name
    nothing (its cells are what the targets are checked on); None when it cannot be built."""
    from emogrid.study.config import config_problems
    from emogrid.study.methods import BUILTIN_METHODS
    from emogrid.study.schema import load_schema, without_rejected

    try:
        trimmed = without_rejected(raw, config, load_schema())
        grid = trimmed.get("grid")
        if isinstance(grid, dict):
            for axis, known in (("models", config.get("models") or {}),
                                ("methods", {**BUILTIN_METHODS, **(config.get("methods") or {})})):
                if isinstance(grid.get(axis), list):
                    kept = [name for name in grid[axis] if name in known]
                    if kept:
                        grid[axis] = kept
                    else:
                        del grid[axis]
        repaired, _ = config_problems(trimmed)  # its own problems may stem from defaults: not reported
    except _BROKEN:
        return None
    return repaired
