"""`emogrid tune-select`: rank one group's candidates on validation and write the choice.

Reads the tuning cells of one rung (their metrics.json, or failure.json for a failed cell;
each checked like every result, emogrid.training.cell_files) and writes, atomically:

* at an earlier rung of successive halving, ``results/tune/<group>.rung<r>.json``: every
  candidate ranked, and `kept`, the ceil(n/eta) that go on to the next rung;
* at the last rung, ``results/tune/<group>.json``: the candidates ranked with their validation
  scores and training health, the earlier rungs, the `choice`, the `rule` that made it and the
  tuning compute (and, under halving, the full search it stands in for).

The rule (emogrid.study.tuning.TIE_RULE): healthy candidates first (every cell finished and
trained: emogrid.training.health), then the highest mean validation metric over the group's
cells, then the order the config lists the candidates in. Only `val` is ever read: tuning cells
have no test scores (emogrid.training.cell_data.evaluated_splits).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from emogrid.errors import EmogridError

TIE_DIGITS = 9  # means equal to 1e-9 are a tie


def cell_record(run_dir: str | Path, metric: str) -> dict:
    """One tuning cell: status (ok / failed / missing / invalid), its validation score, training
    health and compute."""
    from emogrid.training import cell_files
    from emogrid.training.health import logged_health

    run_dir = Path(run_dir)
    out: dict = {"cell": str(run_dir)}
    metrics, failure = run_dir / "metrics.json", run_dir / "failure.json"
    if not metrics.is_file():
        out["status"] = "failed" if failure.is_file() else "missing"
        if failure.is_file():
            from emogrid.training.health import failure_health

            res = cell_files.read(failure, "failure")
            error = (res.data or {}).get("error") if res.valid else None
            out["error"] = f"{error.get('type')}: {error.get('message')}" if isinstance(error, dict) else res.reason
            diverged = failure_health(error)  # a non-finite loss stopped it: it diverged
            if diverged:
                out["health"] = diverged["state"]
        return out
    res = cell_files.read(metrics, "metrics")
    if not res.valid:
        return {**out, "status": "invalid", "error": res.reason}
    data = res.data
    health = data.get("health")
    if not isinstance(health, dict):  # written before emogrid recorded health: judge its log
        health = logged_health(run_dir)
    eff = data.get("efficiency", {})
    score = data["val"].get(metric)
    return {**out, "status": "ok", "score": score if isinstance(score, (int, float)) else None,
            "health": health.get("state"), "health_reason": health.get("reason"),
            "train_seconds": float(eff.get("train_seconds", 0.0)),
            "optimizer_steps": int(eff.get("optimizer_steps", 0)),
            "budget": float((data.get("tuning") or {}).get("budget", 1.0))}


def rank(job: dict, records: dict[str, dict]) -> list[dict]:
    """The job's candidates, best first, each with its score, health and rank."""
    from emogrid.training.health import healthy

    out = []
    for index, cand in enumerate(job["candidates"]):
        cells = [records[c] for c in cand["cells"]]
        scores = [c["score"] for c in cells if c["status"] == "ok" and c.get("score") is not None]
        bad = [c for c in cells if c["status"] != "ok" or not healthy(c.get("health"))]
        states = sorted({c.get("health") or "unchecked" if c["status"] == "ok" or c.get("health") else c["status"]
                         for c in cells})
        out.append({"label": cand["label"], "values": cand["values"], "listed": index,
                    "score": sum(scores) / len(scores) if scores else None,
                    "scores": [c.get("score") for c in cells], "cells": len(cells),
                    "healthy": not bad, "states": states,
                    "problems": [f"{c['cell']}: " + (c.get("error") or c.get("health_reason") or c["status"])
                                 for c in bad]})
    out.sort(key=lambda c: (not c["healthy"], c["score"] is None,
                            -round(c["score"], TIE_DIGITS) if c["score"] is not None else 0.0, c["listed"]))
    for i, cand in enumerate(out, 1):
        cand["rank"] = i
    return out


def select(job: dict, previous: list[dict] | None = None) -> dict:
    """The rung file (earlier rungs) or the choice file (last rung) of one selection job."""
    metric = job["metric"]
    paths = list(dict.fromkeys(c for cand in job["candidates"] for c in cand["cells"]))
    records = {p: cell_record(p, metric) for p in paths}
    ranked = rank(job, records)
    if ranked[0]["score"] is None:
        raise EmogridError(f"tune group {job['group']}: no candidate has a finished tuning cell to choose by",
                           hint="see the cells' failure.json / run.log under results/tune/cells/, fix, and rerun")
    compute = _compute(records.values())
    record = {"group": job["group"], "rung": job["rung"], "budget": job["budget"], "metric": metric,
              "split": "val", "rule": job["rule"], "candidates": ranked, "compute": compute}
    if job["rung"] < job["rungs"] - 1:
        return {**record, "keep": job["keep"], "kept": [c["label"] for c in ranked[:job["keep"]]]}
    best = ranked[0]
    rungs = list(previous or [])
    total = _total(rungs + [record])
    return {**record, "axes": job["axes"], "keys": job["keys"], "methods": job["methods"],
            "eta": job.get("eta"), "rungs": rungs, "choice": best["values"], "choice_label": best["label"],
            "score": best["score"], "healthy": best["healthy"], "total_compute": total}


def _compute(records) -> dict:
    ok = [r for r in records if r["status"] == "ok"]
    return {"cells": len(ok), "train_seconds": round(sum(r["train_seconds"] for r in ok), 3),
            "optimizer_steps": sum(r["optimizer_steps"] for r in ok),
            # every candidate of this rung trained on the whole budget (one full run per cell)
            "full_budget_seconds": round(sum(r["train_seconds"] / r["budget"] for r in ok), 3),
            "full_budget_steps": int(sum(math.ceil(r["optimizer_steps"] / r["budget"]) for r in ok))}


def _total(rungs: list[dict]) -> dict:
    """Tuning compute over every rung, and the full search it stands in for: every candidate of
    the first rung on the whole budget (its cells' steps and seconds divided by their budget)."""
    spent = {k: sum(r["compute"][k] for r in rungs) for k in ("cells", "train_seconds", "optimizer_steps")}
    full = rungs[0]["compute"]
    out = {**spent, "train_seconds": round(spent["train_seconds"], 3),
           "full_search_seconds": full["full_budget_seconds"], "full_search_steps": full["full_budget_steps"]}
    out["saved_share"] = round(1 - spent["optimizer_steps"] / full["full_budget_steps"], 4) \
        if full["full_budget_steps"] else 0.0
    return out


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job", required=True,
                        help="the selection job as JSON (emogrid.study.tuning.Tuning.select_job, plus `previous`: "
                             "the group's earlier rung files, in order)")
    parser.add_argument("--out", required=True, help="the rung or choice file to write")


def run(args: argparse.Namespace) -> int:
    from emogrid.atomic import write_json

    try:
        job = json.loads(args.job)
    except ValueError as err:
        raise EmogridError(f"--job: not valid JSON ({err})") from None
    if not isinstance(job, dict) or "pending" in job:
        raise EmogridError(f"--job: not a selection job ({str(job)[:200]})",
                           hint="run it through snakemake, which builds the job once the earlier rung exists")
    previous = []
    for path in job.get("previous", []):
        try:
            previous.append(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError) as err:
            raise EmogridError(f"{path}: cannot read the earlier rung ({err})",
                               hint="delete it; the next run selects that rung again") from None
    result = select(job, previous)
    write_json(Path(args.out), result)
    best = result["candidates"][0]
    what = (f"kept {', '.join(result['kept'])}" if "kept" in result
            else f"chose {result['choice_label']} (validation {job['metric']} {best['score']:.4f})")
    print(f"emogrid tune-select: {job['group']} rung {job['rung']}: {len(result['candidates'])} candidates, {what}")
    if not best["healthy"]:
        print(f"emogrid tune-select: warning: no candidate of {job['group']} trained healthily "
              f"({'; '.join(best['problems'][:2])}); widen the search", file=sys.stderr)
    return 0
