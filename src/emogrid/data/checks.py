"""Is each dataset of a study readable as configured? Checked when a study is loaded to run
(the CLI's study options and the Snakefile call `check_sources` after the config is final), by
looking at the files: a GoEmotions directory or hub id, a local table's header. No data is loaded.
"""

from __future__ import annotations

from emogrid.errors import ConfigError, DataError
from emogrid.study.datasets import grid_datasets, resolve_dataset


def check_sources(config: dict) -> None:
    """Raise one ConfigError listing every dataset of the grid whose source cannot be read."""
    problems: list[str] = []
    for name in grid_datasets(config):
        problems += source_problems(name, resolve_dataset(name, config))
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))


def source_problems(name: str, defn: dict) -> list[str]:
    """The source exists and (local files) has the configured columns: no data is loaded."""
    if defn.get("kind") == "goemotions":
        from emogrid.data.goemotions import resolve_source

        try:
            resolve_source(defn)
        except DataError as err:
            return [str(err)]
        return []
    from emogrid.data.local_files import read_header

    if not defn.get("path") and not (defn.get("hub") or {}).get("id"):
        return [f"datasets.{name}: needs path: (local files) or hub: {{id: ...}}"]
    problems = []
    if not defn.get("text"):
        problems.append(f"datasets.{name}.text: missing; expected the name of the text column")
    if not defn.get("label") and not defn.get("label_columns"):
        problems.append(f"datasets.{name}: needs label: (a column of class ids, names or id lists) "
                        "or label_columns: (one 0/1 column per label)")
    if defn.get("label") and defn.get("label_columns"):
        problems.append(f"datasets.{name}: give label: or label_columns:, not both")
    if defn.get("path") and defn.get("header") is False and not defn.get("columns"):
        problems.append(f"datasets.{name}.columns: a file without a header (header: false) needs its "
                        "column names in order, e.g. columns: [text, label]")
    if problems:
        return problems
    try:
        headers = read_header(defn)
    except DataError as err:
        return [str(err)]
    wanted = (
        [("text", defn["text"])]
        + ([("label", defn["label"])] if defn.get("label") else [])
        + [("label_columns", c) for c in defn.get("label_columns") or []]
        + ([("id", defn["id"])] if defn.get("id") else [])
    )
    for file, columns in headers.items():
        for key, column in wanted:
            if column not in columns:
                problems.append(f"datasets.{name}.{key}: column {column!r} is not in {file} "
                                f"(its columns: {', '.join(columns)})")
    return problems
