"""Terminal view of a study grid (`emogrid status`): done / failed / running / pending per cell.

Grouped like the study heatmap: one block per method, rows model (and swept variant),
columns labels k x samples n, one symbol per seed. Fits 80 columns (wide grids are split
into column chunks); ``--json`` prints the same facts for scripts.

State of a cell (files under ``{results}/runs/{cell_id}/``, see docs/CONTRACTS.md):
done = a valid metrics.json (shown apart when its training diverged or never trained:
emogrid.training.health); invalid = a metrics.json or failure.json that fails its schema or
identity check (`emogrid.training.cell_files`; the next run retrains it); failed = failure.json; running =
a training process on this machine still holds the cell (`.running.json`), or one on another
host (a cluster node) keeps its claim fresh (heartbeat); interrupted = a checkpoint or claim that
no live process holds (killed; the next run resumes it); pending = nothing yet.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from emogrid.errors import EmogridError
from emogrid.study.cell_id import BASE_AXES, format_variant, parse_cell_id, short_variant

STATES = ("done", "invalid", "failed", "running", "interrupted", "pending")
SYMBOLS = {"done": "●", "invalid": "!", "failed": "✗", "running": "◐", "interrupted": "◌", "pending": "·",
           "did_not_train": "⊘"}
ASCII_SYMBOLS = {"done": "#", "invalid": "!", "failed": "x", "running": "~", "interrupted": "?", "pending": ".",
                 "did_not_train": "/"}


def cell_state(run_dir: Path, cell_id: str | None = None, config_hash: str | None = None
               ) -> tuple[str, dict | None]:
    """(state, error) of one cell folder; error is set for failed and invalid cells."""
    from emogrid.training import cell_files as results

    for kind, state in (("metrics", "done"), ("failure", "failed")):
        path = run_dir / results.KINDS[kind]
        if path.is_file():
            res = results.read(path, kind, cell_id=cell_id, config_hash=config_hash)
            if not res.valid:
                # the cell id is printed above it: file name + reason fit the terminal
                return "invalid", {"type": "InvalidResult", "file": str(res.path),
                                   "message": f"{res.path.name}: " + "; ".join(res.problems),
                                   "hint": "the next `snakemake` run trains this cell again"}
            return state, (_error(res.data) if kind == "failure" else None)
    alive = results.owner_alive(run_dir)
    claimed = (run_dir / results.OWNER_FILE).exists()
    if alive:  # its process runs here, or its heartbeat from another host is fresh
        return "running", None
    if claimed or (run_dir / ".checkpoint").exists():
        return "interrupted", None  # a checkpoint or claim that no process holds any more
    return "pending", None


def _error(obj: dict) -> dict:
    error = obj.get("error")
    return {k: error.get(k) for k in ("type", "message", "hint")}


def grid_status(results_dir: str | os.PathLike, expected: list[dict[str, Any]]) -> dict[str, Any]:
    """State of every expected cell plus result folders outside the grid."""
    results_dir = Path(results_dir)
    runs = results_dir / "runs"
    cells = []
    for cell in expected:
        run_dir = runs / cell["cell_id"]
        state, error = cell_state(run_dir, cell["cell_id"], cell.get("config_hash"))
        entry = {"cell_id": cell["cell_id"], "status": state,
                 "axes": {k: v for k, v in cell.items() if k not in ("cell_id", "config_hash")}}
        if error:
            entry["error"] = error
            from emogrid.training.health import failure_health

            diverged = failure_health(error)  # failed because its loss became non-finite
            if diverged:
                entry["health"] = diverged
        if state == "done":
            check = _learning(run_dir, cell["cell_id"])
            if check is not None:
                entry["learning"] = check
            health = _health(run_dir)
            if health is not None:
                entry["health"] = health
        cells.append(entry)
    counts = {s: sum(1 for c in cells if c["status"] == s) for s in STATES}
    counts["total"] = len(cells)
    known = {c["cell_id"] for c in cells}
    extra = []
    if runs.is_dir():
        from emogrid.results.collect import find_result_files

        extra = sorted(cid for cid in find_result_files(runs) if cid not in known)
    return {"results": str(results_dir), "counts": counts, "cells": cells, "outside_grid": extra,
            "did_not_learn": [c["cell_id"] for c in cells if c.get("learning", {}).get("did_not_learn")],
            "did_not_train": [c["cell_id"] for c in cells if _unhealthy(c)]}


def _health(run_dir: Path) -> dict | None:
    """Training health of a finished cell: {"state", "reason"} (emogrid.training.health)."""
    from emogrid.results.collect import health_columns

    try:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cols = health_columns(metrics, run_dir)
    return {"state": cols["train_health"], "reason": cols["train_health_reason"]} if cols else None


def _unhealthy(cell: dict) -> bool:
    return (cell.get("health") or {}).get("state") in ("diverged", "did_not_train")


def _learning(run_dir: Path, cell_id: str) -> dict | None:
    """Did this finished cell learn? (Cohen's kappa's interval on the test examples excludes 0)"""
    from emogrid.results.uncertainty import learning_check

    try:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return learning_check(metrics, cell_id)


def _variant_of(cell: dict) -> str:
    """The cell's variant: from its id, else from its swept axes (None: unset)."""
    parsed = parse_cell_id(cell["cell_id"])
    axes = cell["axes"]
    return (parsed.get("variant") or axes.get("variant")
            or format_variant({k: v for k, v in axes.items() if k not in BASE_AXES and v is not None}))


def render(status: dict[str, Any], width: int = 80, ascii_only: bool = False,
           show_errors: int = 20) -> str:
    sym = ASCII_SYMBOLS if ascii_only else SYMBOLS
    cells = status["cells"]
    c = status["counts"]
    total = c["total"] or 1
    dot = ", " if ascii_only else " · "
    lines = [f"{c['done']}/{c['total']} done ({100 * c['done'] / total:.0f}%)"
             + "".join(f"{dot}{c[s]} {s}" for s in STATES[1:] if c[s] or s in ("failed", "running", "pending")),
             "  ".join(f"{sym[s]} {s}" for s in STATES)
             + (f"  {sym['did_not_train']} did not train" if any(_unhealthy(x) for x in cells) else "")
             + "  (one per seed)"]
    lines = [_clip(line, width) for line in lines]
    datasets = list(dict.fromkeys(x["axes"]["dataset"] for x in cells))
    methods = list(dict.fromkeys(x["axes"]["method"] for x in cells))
    ks = sorted({int(x["axes"]["labels"]) for x in cells})
    ns = sorted({int(x["axes"]["samples"]) for x in cells})
    cols = [(k, n) for k in ks for n in ns]
    seeds = list(dict.fromkeys(x["axes"]["seed"] for x in cells))
    by_key: dict[tuple, dict] = {}
    for x in cells:
        a = x["axes"]
        key = (a["dataset"], a["method"], a["model"], _variant_of(x), int(a["labels"]), int(a["samples"]))
        # a finished cell whose training diverged or never trained gets its own symbol
        by_key.setdefault(key, {})[a["seed"]] = "did_not_train" if _unhealthy(x) else x["status"]
    col_w = max(len(seeds), max((len(f"n={n}") for n in ns), default=3), 4)
    for ds in datasets:
        for method in methods:
            rows = list(dict.fromkeys((k[2], k[3]) for k in by_key if k[0] == ds and k[1] == method))
            if not rows:
                continue
            states = [s for k, v in by_key.items() if k[0] == ds and k[1] == method for s in v.values()]
            done = sum(s == "done" for s in states)
            head = f"{method}" + (f" ({ds})" if len(datasets) > 1 else "")
            lines += ["", f"{head}: {done}/{len(states)} done"
                      + "".join(f", {sum(s == st for s in states)} {st}"
                                for st in ("invalid", "failed", "running", "interrupted")
                                if any(s == st for s in states))]
            labels = [m + (f" {short_variant(v)}" if v else "") for m, v in rows]
            needed = len(cols) * (col_w + 1)
            label_w = min(max(len(x) for x in labels), max(12, width // 3, width - needed))
            per_chunk = max(1, (width - label_w - 1) // (col_w + 1))
            for chunk in _chunks(cols, per_chunk):
                k_line, n_line = " " * label_w, " " * label_w
                prev_k = None
                for k, n in chunk:
                    k_line += " " + (f"k={k}" if k != prev_k else "").ljust(col_w)
                    n_line += " " + f"n={n}".ljust(col_w)
                    prev_k = k
                lines += [k_line.rstrip(), n_line.rstrip()]
                for (model, variant), label in zip(rows, labels):
                    text = label if len(label) <= label_w else label[:label_w - 1] + "…"
                    line = text.ljust(label_w)
                    for k, n in chunk:
                        seen = by_key.get((ds, method, model, variant, k, n), {})
                        cell = "".join(sym[seen[s]] for s in seeds if s in seen) or "-"
                        line += " " + cell.ljust(col_w)
                    lines.append(line.rstrip())
    failed = [x for x in cells if x["status"] in ("invalid", "failed")]
    if failed:
        lines += ["", f"failed or invalid cells ({len(failed)}):"]
        for x in failed[:show_errors]:
            err = x.get("error") or {}
            msg = ": ".join(str(v) for v in (err.get("type"), err.get("message")) if v)
            lines.append(_clip(f"  {x['cell_id']}", width))
            if msg:
                lines.append(_clip(f"    {msg}", width))
            if err.get("hint"):
                lines.append(_clip(f"    hint: {err['hint']}", width))
        if len(failed) > show_errors:
            lines.append(f"  … {len(failed) - show_errors} more (emogrid status --json)")
    stuck = [x for x in cells if x.get("learning", {}).get("did_not_learn")]
    if stuck:
        lines += ["", _clip(f"did not learn ({len(stuck)}): Cohen's kappa's 95% interval includes 0 "
                            "(predictions not shown to depend on the gold label)", width, ascii_only)]
        for x in stuck[:show_errors]:
            chk = x["learning"]
            lines.append(_clip(f"  {x['cell_id']}: accuracy {100 * chk['accuracy']:.1f}%, kappa "
                               f"{chk['kappa']:.2f} [{chk['low']:.2f}, {chk['high']:.2f}], majority class "
                               f"{100 * chk['majority']:.1f}%", width, ascii_only))
        if len(stuck) > show_errors:
            lines.append(f"  {'...' if ascii_only else '…'} {len(stuck) - show_errors} more (emogrid status --json)")
    unhealthy = [x for x in cells if _unhealthy(x)]
    if unhealthy:
        lines += ["", _clip(f"{sym['did_not_train']} diverged or did not train ({len(unhealthy)}): finished, but "
                            "the training loss says the model never trained", width, ascii_only)]
        for x in unhealthy[:show_errors]:
            lines.append(_clip(f"  {x['cell_id']}: {x['health']['state'].replace('_', ' ')}: "
                               f"{x['health']['reason']}", width, ascii_only))
        if len(unhealthy) > show_errors:
            more = len(unhealthy) - show_errors
            lines.append(f"  {'...' if ascii_only else '…'} {more} more (emogrid status --json)")
    if status["outside_grid"]:
        lines += ["", f"{len(status['outside_grid'])} result folder(s) outside this grid "
                      "(other config or older sweep), e.g.", _clip("  " + status["outside_grid"][0], width)]
    return "\n".join(lines) + "\n"


def _chunks(cols: list[tuple[int, int]], size: int) -> list[list[tuple[int, int]]]:
    """Columns in chunks of at most `size`, breaking between label counts where possible."""
    chunks: list[list] = [[]]
    for k in dict.fromkeys(k for k, _ in cols):
        group = [c for c in cols if c[0] == k]
        if chunks[-1] and len(chunks[-1]) + len(group) > size:
            chunks.append([])
        for col in group:
            if len(chunks[-1]) >= size:
                chunks.append([])
            chunks[-1].append(col)
    return [c for c in chunks if c]


def _clip(text: str, width: int, ascii_only: bool = False) -> str:
    return text if len(text) <= width else text[:width - 1] + ("~" if ascii_only else "…")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from emogrid.cli_config import add_config_args, add_results_arg

    add_config_args(parser)
    add_results_arg(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--ascii", action="store_true", help="ASCII symbols only (# x ~ .)")
    parser.add_argument("--width", type=int, default=None,
                        help="terminal width (default: detected, at most 100)")


def run(args: argparse.Namespace) -> int:
    from emogrid.cli_config import config_from_args, results_from_args
    from emogrid.results.collect import expected_cells

    results_dir = results_from_args(args)
    if not results_dir.is_dir():
        raise EmogridError(f"results folder {results_dir}: no such directory",
                           hint="run the study first, or name its folder with --results (a study's folder is "
                                "its `results:` key, else results/<study.name>, relative to where snakemake ran)")

    expected = expected_cells(config=config_from_args(args), results=results_dir)
    if not expected:
        raise EmogridError("the config expands to no cells")
    status = grid_status(results_dir, expected)
    if args.json:
        json.dump(status, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    width = args.width or min(shutil.get_terminal_size((80, 24)).columns, 100)
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower()
    ascii_only = args.ascii or "utf" not in encoding
    sys.stdout.write(render(status, width=width, ascii_only=ascii_only))
    return 0
