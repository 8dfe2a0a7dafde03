"""What the report rules wait for (workflow/rules/report.smk): pure functions of the grid and
the results folder, so the rules stay thin and this logic is tested.

Report-only mode (`--config report_only=True` or EMOGRID_REPORT_ONLY=1) drops every result
file from the inputs of `aggregate`, so no training or data job can be scheduled; a
fingerprint of the result files (path, size, mtime) is a param instead, so new or changed
results still rerun the tables.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

TRUE = ("1", "true", "yes", "on")


def report_only(config: dict, environ=None) -> bool:
    environ = os.environ if environ is None else environ
    return (str(config.get("report_only", False)).strip().lower() in TRUE
            or str(environ.get("EMOGRID_REPORT_ONLY", "0")).strip().lower() in TRUE)


def result_inputs(run_dirs: list[str], only_report: bool) -> list[str]:
    """One file per cell: metrics.json, or failure.json when only that exists (a failed cell
    does not block the tables); none in report-only mode."""
    if only_report:
        return []
    paths = []
    for run_dir in run_dirs:
        metrics, failure = f"{run_dir}/metrics.json", f"{run_dir}/failure.json"
        paths.append(failure if os.path.exists(failure) and not os.path.exists(metrics) else metrics)
    return paths


def results_fingerprint(results: str | os.PathLike, only_report: bool) -> str:
    """Report-only mode: a digest of every result file under <results>/runs, else ""."""
    if not only_report:
        return ""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(Path(results) / "runs"):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "adapter")
        for name in ("metrics.json", "failure.json"):
            if name in files:
                st = os.stat(os.path.join(root, name))
                digest.update(f"{os.path.join(root, name)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def reference_input(config: dict, basedir: str | os.PathLike) -> list[str]:
    """report.reference (published numbers) as an input, so editing it reruns the tables:
    relative to the working directory, else to the workflow."""
    ref = (config.get("report") or {}).get("reference")
    if not ref:
        return []
    local = Path(basedir) / ref
    return [ref if Path(ref).is_absolute() or Path(ref).exists() or not local.exists() else str(local)]
