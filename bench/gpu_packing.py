"""Bench: 8 small cells, one per GPU vs packed (resources.train.cells_per_gpu auto).

    python bench/gpu_packing.py                       # on a GPU machine: Llama-3.2-1B config, random weights
    python bench/gpu_packing.py --smoke               # CPU harness check: tiny Llama, 2 fake GPUs

The same 8 LoRA cells (labels 2/4/8/16 x seeds 0/1, 800 examples, the bench recipe) run twice
through the real `emogrid gpu-slot -- emogrid train` path, all 8 started at once as Snakemake
would start them: (a) `--cells-per-gpu 1`, a GPU per cell, the others wait; (b) `--cells-per-gpu
auto --mem-mb <plan x margin>`, packed by planned GPU memory. Reported per mode: wall time of the
8 cells, cells/hour, peak GPU memory (reserved) per cell against the plan, and MFU of the whole
machine = 6 N x non-pad training tokens / wall / (peak bf16 FLOP/s x GPUs) with N the matmul
weights (the same definition as bench/run.py). Results: bench/out/packing/results.json and
table.md. With --smoke (no CUDA) the cells train on CPU through the same ledger on fake GPUs
(EMOGRID_GPUS / EMOGRID_GPU_MEM_MB), which checks the harness, not GPU speed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tiny_models (--smoke) imports helpers

from bench import run as B  # noqa: E402  (prepare_subset, cell_spec, gpu_model, tiny_llama, PEAK_BF16_TFLOPS)

CELLS = [(k, seed) for k in (2, 4, 8, 16) for seed in (0, 1)]


def matmul_params(cfg: dict) -> int:
    h = cfg["hidden_size"]
    hd = cfg.get("head_dim") or h // cfg["num_attention_heads"]
    per_layer = (h * cfg["num_attention_heads"] * hd * 2 + h * cfg["num_key_value_heads"] * hd * 2
                 + 3 * h * cfg["intermediate_size"])
    return per_layer * cfg["num_hidden_layers"]


def specs(out: Path, model_dir: Path, epochs: int, batch: int, smoke: bool) -> list[tuple[dict, Path]]:
    extra = {"train": {"batch_size": batch, "lr": 1.0e-4, "precision": "fp32" if smoke else "bf16",
                       "eval_batch_size": 64}}
    result = []
    for k, seed in CELLS:
        n = 320 if smoke else 800
        spec = B.cell_spec(out, {"path": str(model_dir)}, "lora", k, n, epochs, extra=extra)
        spec["cell"]["seed"] = seed
        spec["cell_id"] = spec["cell_id"].replace("/s0", f"/s{seed}")
        from emogrid.study.grid import config_hash

        spec["config_hash"] = config_hash(spec)
        result.append((spec, B.prepare_subset(out, k, n, seed)))
    return result


def run_mode(mode: str, cells, out: Path, env: dict, margin: float) -> dict:
    from emogrid.planning.memory import plan_cell_memory

    root = out / f"runs-{mode}"
    shutil.rmtree(root, ignore_errors=True)
    locks = out / f"locks-{mode}"
    shutil.rmtree(locks, ignore_errors=True)
    procs = []
    t0 = time.time()
    for i, (spec, data) in enumerate(cells):
        run_dir = root / f"cell{i}"
        run_dir.mkdir(parents=True)
        plan_mb = plan_cell_memory(spec)["train_peak_mb"] * margin
        (run_dir / "spec.json").write_text(json.dumps(spec))
        cmd = [sys.executable, "-m", "emogrid", "gpu-slot", "--lock-dir", str(locks),
               "--cells-per-gpu", "auto" if mode == "packed" else "1", "--mem-mb", f"{plan_mb:.0f}", "--",
               sys.executable, "-m", "emogrid", "train", "--spec", f"@{run_dir / 'spec.json'}", "--data", str(data),
               "--out", str(run_dir)]
        log = open(run_dir / "slot.log", "w")
        procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log, run_dir))
    failures = []
    for proc, log, run_dir in procs:
        if proc.wait() != 0:
            failures.append(f"{run_dir.name}: exit {proc.returncode}: {(run_dir / 'slot.log').read_text()[-800:]}")
        log.close()
    wall = time.time() - t0
    metrics = [json.loads((d / "metrics.json").read_text()) for _, _, d in procs if (d / "metrics.json").is_file()]
    eff = [m["efficiency"] for m in metrics]
    tokens = sum(e["train_tokens_per_second"] * e["train_seconds"] for e in eff)
    return {"mode": mode, "wall_s": wall, "cells": len(metrics), "failures": failures,
            "cells_per_hour": 3600 * len(metrics) / wall if wall else None, "train_tokens": tokens,
            "per_cell": [{"cell_id": m["cell_id"], "train_s": m["efficiency"]["train_seconds"],
                          "peak_reserved_mb": m["efficiency"].get("peak_memory_reserved_mb"),
                          "peak_mb": m["efficiency"].get("peak_memory_mb"),
                          "planned_gpu_mb": m["efficiency"].get("planned_gpu_mb"),
                          "planned_reserved_mb": m["efficiency"].get("planned_reserved_mb"),
                          "co_tenants": m["efficiency"].get("gpu_co_tenants"),
                          "gpu_plan_ratio": m["efficiency"].get("gpu_plan_ratio"),
                          "test_accuracy": m["test"]["accuracy"]} for m in metrics]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="CPU: tiny Llama on 2 fake GPUs (harness check)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--margin", type=float, default=1.2, help="resources.safety_margin")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "packing"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    env.pop("EMOGRID_GPU_SLOT", None)
    if args.smoke:
        model_dir = B.tiny_llama(out)
        # 2 fake GPUs; the cells themselves train on CPU (CUDA hidden inside each cell)
        env.update(EMOGRID_GPUS="2", EMOGRID_GPU_MEM_MB="2000", OMP_NUM_THREADS="1")
        device, peak, gpus = "CPU (2 fake GPUs of 2000 MiB)", None, 2
    else:
        if not torch.cuda.is_available():
            print("no CUDA here: run on a GPU machine, or --smoke for the CPU harness check", file=sys.stderr)
            return 2
        model_dir = B.gpu_model(out)
        gpus = torch.cuda.device_count()
        device = torch.cuda.get_device_name(0)
        peak = B.peak_bf16_tflops(device)
    cells = specs(out, model_dir, args.epochs, args.batch, args.smoke)
    n_params = matmul_params(json.loads((Path(model_dir) / "config.json").read_text()))
    results = {"device": device, "gpus": gpus, "margin": args.margin, "modes": []}
    for mode in ("one-per-gpu", "packed"):
        B.log(f"mode {mode}: 8 cells")
        rec = run_mode(mode, cells, out, env, args.margin)
        if peak:
            rec["mfu_pct"] = 100 * 6 * n_params * rec["train_tokens"] / rec["wall_s"] / (peak * 1e12 * gpus)
        results["modes"].append(rec)
        B.log(f"  {rec['cells']} cells in {rec['wall_s']:.1f} s = {rec['cells_per_hour']:.1f} cells/h"
              + (f", MFU {rec['mfu_pct']:.1f}%" if rec.get("mfu_pct") is not None else "")
              + (f"; FAILED: {rec['failures']}" if rec["failures"] else ""))
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "table.md").write_text(table(results))
    print(table(results))
    return 0 if all(not m["failures"] for m in results["modes"]) else 1


def table(results: dict) -> str:
    lines = [f"**GPU packing** — {results['device']}, {results['gpus']} GPU(s), 8 LoRA cells, safety margin "
             f"{results['margin']}", "", "| mode | wall s | cells/h | MFU % | peak reserved / plan (min-max) |",
             "|:--|--:|--:|--:|--:|"]
    for m in results["modes"]:
        ratios = [c["gpu_plan_ratio"] for c in m["per_cell"] if c.get("gpu_plan_ratio")]
        ratio = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "—"
        mfu = f"{m['mfu_pct']:.1f}" if m.get("mfu_pct") is not None else "—"
        lines.append(f"| {m['mode']} | {m['wall_s']:.1f} | {m['cells_per_hour']:.1f} | {mfu} | {ratio} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
