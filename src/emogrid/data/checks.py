"""Is each dataset of a study readable as configured? Checked when a study is loaded to run
(emogrid.planning.study_check, for the CLI's study options and the Snakefile), by looking at the
files: a GoEmotions directory or hub id, a local table's header (`sources_problems`; no data is
loaded). Before a run, `subset_problems` also reads a local table and draws each subset the grid
asks for, with the data step's own code and messages.
"""

from __future__ import annotations

from emogrid.errors import ConfigError, DataError
from emogrid.study.dataset_definition import DatasetDefinition
from emogrid.study.datasets import grid_datasets, resolve_dataset


def check_sources(config: dict) -> None:
    """Raise one ConfigError listing every dataset of the grid whose source cannot be read."""
    problems = sources_problems(config)
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))


def sources_problems(config: dict) -> list[str]:
    """One message per dataset source of the grid that cannot be read ([] when all can)."""
    problems: list[str] = []
    for name in grid_datasets(config):
        problems += source_problems(name, resolve_dataset(name, config))
    return problems


def subset_problems(config: dict, subsets, skip: tuple[str, ...] = ()) -> list[str]:
    """Local table datasets, read now: the data step's own loader and subset draw for every
    (dataset, k, n, seed) of `subsets` (emogrid.study.grid.subsets), so a label count the file
    lacks, n beyond what a label holds or a split file that is not there stops before anything
    is scheduled, with the message the `prepare_data` job would have written to its log.

    Hub datasets (read when fetched) and GoEmotions (whose label counts the taxonomy fixes,
    checked in emogrid.study.semantics) are left to the data step; datasets in `skip` (their
    source already failed) too. Single-label draws fail or pass alike for every seed, so one
    seed per (k, n) is drawn; multi-label draws depend on the seed and are drawn for each."""
    from emogrid.data.subset_selection import build_subset
    from emogrid.data.subset_writer import load_dataset_definition

    wanted: dict[str, list[tuple[int, int, int]]] = {}
    for dataset, k, n, seed in subsets:
        wanted.setdefault(dataset, []).append((int(k), int(n), int(seed)))
    problems: list[str] = []
    for name, draws in wanted.items():
        defn = resolve_dataset(name, config)
        if name in skip or defn.kind != "table" or not defn.path:
            continue
        try:
            loaded = load_dataset_definition(defn)
        except (DataError, ConfigError) as err:
            problems.append(_message(err))
            continue
        drawn: set[tuple[int, int]] = set()
        for k, n, seed in draws:
            if defn.mode == "single" and (k, n) in drawn:
                continue
            drawn.add((k, n))
            try:
                build_subset(loaded, defn, k, n, seed)
            except (DataError, ConfigError) as err:
                problems.append(f"dataset '{name}', subset k={k} n={n} seed={seed}: {_message(err)}")
    return list(dict.fromkeys(problems))


def _message(err) -> str:
    """An error's message with its hint on the same line (one line per problem)."""
    hint = getattr(err, "hint", None)
    return str(err.args[0]) + (f" (hint: {hint})" if hint else "")


def source_problems(name: str, defn: DatasetDefinition) -> list[str]:
    """The source exists and (local files) has the configured columns: no data is loaded."""
    if defn.kind == "goemotions":
        from emogrid.data.goemotions import resolve_source

        try:
            resolve_source(defn)
        except DataError as err:
            return [str(err)]
        return []
    from emogrid.data.local_files import read_header

    if not defn.path and not (defn.hub and defn.hub.id):
        return [f"datasets.{name}: needs path: (local files) or hub: {{id: ...}}"]
    problems = []
    if not defn.label and not defn.label_columns:
        problems.append(f"datasets.{name}: needs label: (a column of class ids, names or id lists) "
                        "or label_columns: (one 0/1 column per label)")
    if defn.label and defn.label_columns:
        problems.append(f"datasets.{name}: give label: or label_columns:, not both")
    if defn.path and not defn.header and not defn.columns:
        problems.append(f"datasets.{name}.columns: a file without a header (header: false) needs its "
                        "column names in order, e.g. columns: [text, label]")
    if problems:
        return problems
    try:
        headers = read_header(defn)
    except DataError as err:
        return [str(err)]
    wanted = (
        [("text", defn.text)]
        + ([("label", defn.label)] if defn.label else [])
        + [("label_columns", c) for c in defn.label_columns or []]
        + ([("id", defn.id)] if defn.id else [])
    )
    for file, columns in headers.items():
        for key, column in wanted:
            if column not in columns:
                problems.append(f"datasets.{name}.{key}: column {column!r} is not in {file} "
                                f"(its columns: {', '.join(columns)})")
    return problems
