"""Where a study writes: one study, one results folder.

The rule, the same for the Snakefile and every `emogrid` command that reads or writes results
(status, aggregate, figures, plan, fetch, diff, publish, `emogrid.open_study`): the top-level
`results:` key when the study sets it (a path; relative = relative to the working directory,
Snakemake's `--directory`), else `results/<study.name>`. Everything the study writes goes
under it (data subsets, runs, tune/, tables, figures, logs, fetch receipts, the report), so its
tables, figures, comparison families and report hold its own cells only; two studies are
compared with `emogrid diff`.
"""

from __future__ import annotations

import os
from pathlib import Path

from emogrid.study.config import merge_layers, read_study

RESULTS_ROOT = "results"  # the parent of every study's default folder (git-ignored)
DEFAULT_STUDY_NAME = "study"  # the schema's default study.name


def study_results_dir(config: dict) -> Path:
    """The study's results folder from its (raw or validated) config: `results`, else
    `results/<study.name>`."""
    chosen = config.get("results")
    if chosen:
        return Path(str(chosen)).expanduser()
    name = (config.get("study") or {}).get("name") or DEFAULT_STUDY_NAME
    return Path(RESULTS_ROOT) / str(name)


def is_study_file(path: str | os.PathLike) -> bool:
    """Whether a command-line path names a study file (YAML/JSON) rather than a results folder."""
    path = Path(path)
    return path.suffix.lower() in (".yaml", ".yml", ".json") and path.is_file()


def results_dir_of(path: str | os.PathLike) -> Path:
    """A results folder as given, or the folder of the study a study file describes (for
    `emogrid diff studies/quickstart.yaml results/other` and `emogrid.open_study`)."""
    if is_study_file(path):
        return study_results_dir(merge_layers(read_study([path])))
    return Path(path)
