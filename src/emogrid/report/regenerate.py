"""How to rebuild a study's tables, figures and HTML report: the command lines, spelled with the
study's own config files, for the report's text and the run's last log line.

Snakemake's `--report` is a mode, not a target: a run builds the tables and figures, then
`snakemake --report <results>/report.html ...` (with the same `--configfile`) writes the HTML.
The report's text (workflow/report/workflow.rst, a Jinja template Snakemake renders with the
config only) gets these commands and the study's folder substituted in first: `render_report_text`
writes the rendered copy into Snakemake's per-run temporary folder, never into the results.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

REGENERATE_MARK = "%%REGENERATE%%"  # the template's place for the commands (an indented literal block)
RESULTS_MARK = "%%RESULTS%%"  # the template's spelling of the study's results folder


def _shown(path: str | os.PathLike, cwd: Path) -> str:
    """A config file as a user would type it: relative to the working directory when under it."""
    path = Path(path)
    if path.is_absolute() and path.is_relative_to(cwd):
        return path.relative_to(cwd).as_posix()
    return path.as_posix()


def study_options(configfiles: list | tuple, cwd: str | os.PathLike | None = None) -> str:
    """` --configfile a.yaml b.yaml` for the study's files ("" for the default study)."""
    if not configfiles:
        return ""
    cwd = Path(cwd or os.getcwd()).resolve()
    return " --configfile " + " ".join(shlex.quote(_shown(f, cwd)) for f in configfiles)


def regenerate_commands(results: str | os.PathLike, configfiles: list | tuple = (),
                        cwd: str | os.PathLike | None = None) -> list[str]:
    """Tables + figures from finished results (never trains), then the HTML report."""
    study = study_options(configfiles, cwd)
    report = shlex.quote(f"{Path(results).as_posix()}/report.html")
    return [f"snakemake --cores 1 figures{study} --config report_only=True",
            f"snakemake --report {report} figures{study} --config report_only=True"]


def report_command(results: str | os.PathLike, configfiles: list | tuple = (),
                   cwd: str | os.PathLike | None = None) -> str:
    """The HTML report of a finished run (the run's last log line names it)."""
    return regenerate_commands(results, configfiles, cwd)[1]


def render_report_text(template: str | os.PathLike, out_dir: str | os.PathLike, results: str | os.PathLike,
                       configfiles: list | tuple = (), cwd: str | os.PathLike | None = None) -> Path:
    """The report's text with the study's folder and regenerate commands filled in; returns its path."""
    text = Path(template).read_text(encoding="utf-8")
    block = "\n".join(f"    {line}" for line in regenerate_commands(results, configfiles, cwd))
    text = text.replace(REGENERATE_MARK, block).replace(RESULTS_MARK, Path(results).as_posix())
    out = Path(out_dir) / "emogrid_report.rst"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out
