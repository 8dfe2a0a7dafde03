"""Orchestration timings on a 1,080-cell grid (bench/run.py prints them; runnable alone).

    python bench/orchestration.py [--out bench/out/orch]

1. `snakemake -n` on a fresh directory: 4 labels x 3 samples x 5 models x
   6 methods (full lora qlora ia3 loraplus dora) x 3 seeds = 1,080 train jobs (+ 36 data jobs).
2. no-op rerun: every output of that grid made to exist (empty-ish files, created in DAG
   order), then `snakemake --touch` records Snakemake's metadata for them (untimed); then
   `snakemake -n` and `snakemake --cores 1` are timed: both must find nothing to do.
3. `emogrid aggregate` over 1,080 synthetic metrics.json files
   (tests/fixtures_results.py::build_big_tree: 3 models x 6 methods x 3 labels x 4 sizes x 5 seeds).
4. `emogrid prepare` of the papers' largest subset (16 labels x 2,400) from the local GoEmotions copy.

Each timing is a fresh process, spawn to exit, as a user types it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA_SOURCE = os.environ.get("EMOGRID_DATA_DIR") or str(ROOT.parent / "shared" / "data" / "goemotions")

GRID = f"""data: {{path: {DATA_SOURCE}}}
grid:
  labels: [2, 4, 8, 16]
  samples: [800, 1600, 2400]
  models: [qwen2.5-1.5b, llama-3.2-1b, gpt2-xl, gemma-3-1b, bert-base]
  methods: [full, lora, qlora, ia3, loraplus, dora]
  seeds: [0, 1, 2]
resources: {{train: {{gpu: 1, mem_mb: 32000, runtime: 240}}}}
"""


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    return env


def timed(cmd: list[str], log: Path, cwd: Path = ROOT) -> dict:
    with open(log, "w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=_env(), stdout=fh, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    text = log.read_text(errors="replace")
    return {"seconds": round(seconds, 3), "cpu_seconds": round(ru.ru_utime + ru.ru_stime, 3), "rc": rc,
            "cmd": " ".join(cmd), "log": str(log), "tail": text[-600:] if rc else ""}


def snakemake(work: Path, *extra: str) -> list[str]:
    return ["snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work),
            "--configfile", str(work / "grid.yaml"), *extra]


def _outputs_in_dag_order(dry_log: str) -> list[list[str]]:
    """Output (+ log) files of each job a `snakemake -n` printed, grouped by rule stage."""
    stages = {"prepare_data": 0, "train": 1, "aggregate": 2}
    groups: list[list[str]] = [[], [], [], []]
    rule = None
    for line in dry_log.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):", line.strip())
        if m:
            rule = m.group(1)
            continue
        m = re.match(r"^\s+(output|log): (.*)$", line)
        if m and rule and rule != "all":
            groups[stages.get(rule, 3)].extend(p.strip() for p in m.group(2).split(", ") if p.strip())
    return groups


def measure_snakemake(work: Path) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "grid.yaml").write_text(GRID)
    res = {}
    res["snakemake -n (1,080-cell grid, nothing built)"] = r = timed(snakemake(work, "-n", "--cores", "1"),
                                                                    work / "dry.log")
    text = (work / "dry.log").read_text(errors="replace")
    m = re.search(r"^train\s+(\d+)$", text, re.M)
    r["train_jobs"] = int(m.group(1)) if m else None
    m = re.search(r"^total\s+(\d+)$", text, re.M)
    r["jobs"] = int(m.group(1)) if m else None
    groups = _outputs_in_dag_order(text)
    n_files = 0
    for group in groups:  # oldest first: data, runs, tables, figures
        for rel in group:
            path = work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_text('{"status": "ok"}\n' if rel.endswith(".json") else "")
                n_files += 1
        time.sleep(0.02)
    t = timed(snakemake(work, "--touch", "--cores", "1"), work / "touch.log")
    res["(setup) snakemake --touch, untimed target"] = {**t, "files_made": n_files}
    r = timed(snakemake(work, "-n", "--cores", "1"), work / "noop-dry.log")
    r["nothing_to_do"] = "Nothing to be done" in (work / "noop-dry.log").read_text(errors="replace")
    res["snakemake -n (no-op rerun, 1,080 cells done)"] = r
    r = timed(snakemake(work, "--cores", "1"), work / "noop-run.log")
    run_log = (work / "noop-run.log").read_text(errors="replace")
    r["nothing_to_do"] = "Nothing to be done" in run_log
    if not r["nothing_to_do"]:  # say what ran and why (e.g. a source file edited meanwhile)
        r["reran"] = "; ".join(f"{a}: {b.strip()[:120]}" for a, b in
                               re.findall(r"rule (\w+):.*?reason: ([^\n]*)", run_log, re.S))
    res["snakemake --cores 1 (no-op rerun, 1,080 cells done)"] = r
    return res


def measure_aggregate(work: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from tests.fixtures_results import build_big_tree

    runs = work / "agg" / "runs"
    shutil.rmtree(work / "agg", ignore_errors=True)
    count = build_big_tree(runs)
    r = timed(
        [sys.executable, "-m", "emogrid", "aggregate", "--runs", str(runs), "--out", str(work / "agg" / "tables")],
        work / "aggregate.log",
    )
    r["cells"] = count
    m = re.search(r"in ([0-9.]+)s", (work / "aggregate.log").read_text(errors="replace"))
    r["internal_seconds"] = float(m.group(1)) if m else None
    return {f"emogrid aggregate ({count} synthetic cells)": r}


def measure_prepare(work: Path) -> dict:
    data = json.dumps({"path": DATA_SOURCE, "taxonomy": "original", "mode": "single"})
    target = work / "prepare" / "k16_n2400_s0"
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "emogrid", "prepare", "--data", data, "--labels", "16", "--samples", "2400",
           "--seed", "0", "--out", str(target)]
    return {"emogrid prepare (k=16, n=2,400)": timed(cmd, work / "prepare.log")}


def measure_all(work: Path) -> dict:
    work = Path(work)
    out = {}
    try:
        out.update(measure_snakemake(work))
    except Exception as err:  # noqa: BLE001 - report, don't hide the other numbers
        out["snakemake"] = {"error": f"{type(err).__name__}: {err}"}
    try:
        out.update(measure_aggregate(work))
    except Exception as err:  # noqa: BLE001
        out["aggregate"] = {"error": f"{type(err).__name__}: {err}"}
    try:
        out.update(measure_prepare(work))
    except Exception as err:  # noqa: BLE001
        out["prepare"] = {"error": f"{type(err).__name__}: {err}"}
    return out


def render(res: dict) -> str:
    lines = [
        "\n### orchestration (1,080-cell grid)\n",
        "| step | wall s | CPU s | rc | note |",
        "|---|---|---|---|---|",
    ]
    for name, r in res.items():
        if "error" in r:
            lines.append(f"| {name} | - | - | - | {r['error']} |")
            continue
        note = []
        for key in ("jobs", "train_jobs", "files_made", "nothing_to_do", "reran", "cells", "internal_seconds"):
            if key in r and r[key] is not None:
                note.append(f"{key}={r[key]}")
        if r.get("rc"):
            note.append("FAILED: " + r.get("tail", "").strip().replace("\n", " ")[-300:])
        lines.append(
            f"| {name} | {r['seconds']:.2f} | {r.get('cpu_seconds', float('nan')):.2f} | {r['rc']} "
            f"| {', '.join(note)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "orch"))
    args = ap.parse_args()
    res = measure_all(Path(args.out).resolve())
    Path(args.out, "orchestration.json").write_text(json.dumps(res, indent=1))
    print(render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
