"""The device check (bench/device_check/README.md): what emogrid's GPU paths do on one GPU, in one run.

    bash bench/device_check/run.sh            # one H100/H200, no network, <= 8 minutes
    bash bench/device_check/run.sh --cpu      # the same sections, CI-sized, on this CPU machine

Sections, in order (each records ok / skipped with the reason / failed with the error, and the
JSON + Markdown are rewritten after each, so a run cut short keeps what it measured):

1. environment: versions, the card, its dense bf16 peak (PEAK_BF16_TFLOPS).
2. accumulation: one optimizer step of 16 rows as 16x1, 8x2 and 4x4 in bf16 (full fine-tuning of
   the BERT-base shape, LoRA on the Qwen2.5-1.5B shape, dropout off): same loss and gradient norm.
3. methods: full, LoRA, QLoRA (when bitsandbytes imports), DoRA, IA3 on the Llama-3.2-1B shape,
   each one `emogrid train` process: training tokens/s, MFU against the card's bf16 peak, peak
   memory (allocated, reserved) against `emogrid plan`'s estimate.
4. packing: 8 small cells (BERT-base shape, LoRA) through `emogrid gpu-slot`, one at a time vs
   `--cells-per-gpu auto`: cells/hour, OOMs, how many ran at once.
5. snakemake: a 4-cell grid (2 label counts x 2 seeds) through the real Snakefile and gpu-slot.

Models are random-initialised from the bundled configs (src/emogrid/model_configs; --cpu shrinks
them to 2 layers of width 64), with a tokenizer trained here on the data's text: nothing is
downloaded. Data: the GoEmotions copy when one is found (EMOGRID_DATA_DIR, bench/device_check/data,
../shared/data/goemotions), else a synthetic set (the snakemake section then skips).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

# Dense bf16 tensor-core peaks (TFLOP/s) from NVIDIA's datasheets (their "with sparsity" figures
# are twice these). Matched against torch.cuda.get_device_name, most specific first.
PEAK_BF16_TFLOPS = [("H200 NVL", 835.0), ("H200", 989.4), ("H100 NVL", 835.0), ("H100 PCIe", 756.0),
                    ("H100", 989.4), ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0)]
PACKAGES = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "safetensors", "tokenizers",
            "scikit-learn", "scipy", "numpy", "pandas", "pyyaml", "psutil", "jsonschema", "fastjsonschema",
            "snakemake", "pulp")
METHODS = ("full", "lora", "qlora", "dora", "ia3")
MARGIN = 1.2  # resources.safety_margin's default: what gpu-slot packs by


class Skip(Exception):
    """A section that cannot run here, and why."""


# ---------------------------------------------------------------- setup: data, tokenizer, models


def find_data() -> Path | None:
    """A GoEmotions copy (the layout emogrid prepare reads), or None."""
    for cand in (os.environ.get("EMOGRID_DATA_DIR"), HERE / "data" / "goemotions",
                 ROOT.parent / "shared" / "data" / "goemotions"):
        if cand and (Path(cand) / "original").is_dir():
            return Path(cand)
    return None


def corpus(data: Path | None, limit: int = 5000) -> list[str]:
    if data is not None:
        with open(data / "original" / "train.tsv", encoding="utf-8") as fh:
            return [line.split("\t", 1)[0] for _, line in zip(range(limit), fh)]
    return [" ".join(SYNTH_WORDS[(i * 7 + j * 3) % len(SYNTH_WORDS)] for j in range(4 + i % 30)) for i in range(2000)]


SYNTH_WORDS = ("i love this so much thank you that is sad and sorry wow amazing angry at stupid thing haha "
               "funny what do you mean confused great job well done gross scared agree").split()


def subset(ctx: dict, k: int, n: int, seed: int) -> Path:
    """A k-label subset of n examples: emogrid's own writer on GoEmotions, else synthetic rows.
    --cpu keeps 40 test rows (the natural test split has thousands)."""
    target = ctx["out"] / "data" / f"k{k}_n{n}_s{seed}"
    if (target / "manifest.json").is_file():
        return target
    if ctx["data"] is not None:
        from emogrid.data.subset_writer import prepare_subset
        from emogrid.study.dataset_definition import DatasetDefinition

        defn = DatasetDefinition.from_json({"name": "goemotions", "path": str(ctx["data"]), "taxonomy": "original",
                                            "mode": "single", "labels": None, "val_fraction": 0.1, "test": "natural"})
        prepare_subset(defn, k, n, seed, target)
        if ctx["cpu"]:
            test = target / "test.jsonl"
            test.write_text("".join(test.read_text().splitlines(keepends=True)[:40]))
        return target
    import random

    rng = random.Random(seed)
    texts = corpus(None)
    rows = [{"id": f"x{i}", "text": rng.choice(texts), "labels": [i % k]} for i in range(n + 100)]
    target.mkdir(parents=True, exist_ok=True)
    splits = {"train": rows[: n - n // 10], "val": rows[n - n // 10: n], "test": rows[n:]}
    for name, part in splits.items():
        (target / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    (target / "manifest.json").write_text(json.dumps({"dataset": "synthetic", "mode": "single", "k": k, "n": n,
                                                      "seed": seed, "labels": [f"label{j}" for j in range(k)],
                                                      "checksum": "synthetic"}))
    return target


def tokenizer(texts: list[str], encoder: bool, vocab: int):
    """A tokenizer trained on `texts` (WordPiece for BERT, byte-level BPE for decoders)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if encoder:
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab, special_tokens=special))
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                           special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                       sep_token="[SEP]", mask_token="[MASK]")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")


def build_model(ctx: dict, name: str, dropout: bool = True) -> Path:
    """A random model from src/emogrid/model_configs/<name>.json (shrunk with --cpu), saved with its
    tokenizer like a hub checkout, in bf16 on a GPU. `dropout=False`: every dropout rate 0."""
    import torch
    import transformers

    target = ctx["out"] / "models" / (name if dropout else f"{name}-nodropout")
    if (target / "config.json").is_file():
        return target
    cfg = json.loads((ROOT / "src" / "emogrid" / "model_configs" / f"{name}.json").read_text())
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in ("architectures", "transformers_version")}
    if not dropout:
        cfg.update({key: 0.0 for key in cfg if "dropout" in key and isinstance(cfg[key], float)})
    encoder = cfg["model_type"] == "bert"
    tok = tokenizer(corpus(ctx["data"]), encoder, 512 if ctx["cpu"] else 8192)
    if ctx["cpu"]:  # the same architecture, CI-sized
        cfg.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   max_position_embeddings=512 if encoder else 8192)
        if "num_key_value_heads" in cfg:
            cfg["num_key_value_heads"] = 2
        cfg.pop("head_dim", None)
        cfg.pop("layer_types", None)
        cfg.pop("max_window_layers", None)
    if encoder:
        cfg["vocab_size"] = max(cfg.get("vocab_size", 0), len(tok)) if not ctx["cpu"] else len(tok)
        cfg["pad_token_id"] = tok.pad_token_id
    elif ctx["cpu"]:
        cfg["vocab_size"] = len(tok)
    if not encoder:
        cfg.update(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    config = transformers.AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    cls = transformers.AutoModel if encoder else transformers.AutoModelForCausalLM
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = cls.from_config(config)
    if device == "cuda":
        model = model.to(torch.bfloat16)
    model.save_pretrained(target)
    tok.save_pretrained(target)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return target


def cell_spec(ctx: dict, model_dir: Path, method: str, k: int, n: int, seed: int = 0, extra: dict | None = None,
              **train) -> dict:
    """The spec emogrid's grid gives this cell: config.yaml + the cell, early stopping off."""
    from emogrid.study.config import finalize, read_yaml
    from emogrid.study.grid import config_hash, expand_cells
    from emogrid.study.merge import deep_merge

    base = read_yaml(ROOT / "config.yaml")
    overlay = {"data": {"path": str(ctx["data"] or ctx["out"] / "data"), "name": "goemotions"},
               "grid": {"labels": [k], "samples": [n], "models": ["m"], "methods": [method], "seeds": [seed]},
               "models": {"m": {"path": str(model_dir)}},
               "train": {"epochs": 1, "patience": 0, "eval_every": "epoch", "save_adapter": False,
                         "max_length": 128, **train}}
    config = finalize(deep_merge(deep_merge(base, overlay), extra or {}))
    spec = json.loads(json.dumps(expand_cells(config)[0].spec))
    spec["config_hash"] = config_hash(spec)
    return spec


def train_process(ctx: dict, spec: dict, data: Path, out: Path, env: dict | None = None,
                  slot: list[str] | None = None) -> subprocess.Popen:
    """`emogrid train` for one cell in its own process (clean peak-memory counters), optionally
    under `emogrid gpu-slot` (`slot`: its arguments)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.json").write_text(json.dumps(spec))
    cmd = [sys.executable, "-m", "emogrid", "train", "--spec", f"@{out / 'spec.json'}", "--data", str(data),
           "--out", str(out)]
    if slot is not None:
        cmd = [sys.executable, "-m", "emogrid", "gpu-slot", *slot, "--", *cmd]
    log = open(out / "process.log", "w")
    proc = subprocess.Popen(cmd, env=env or ctx["env"], stdout=log, stderr=subprocess.STDOUT)
    proc.log = log
    return proc


def in_process(spec: dict, data: Path, out: Path) -> dict:
    """`emogrid train`'s cell in this process (--cpu: saves the interpreter start-ups)."""
    from emogrid.training.provenance import now
    from emogrid.training.train import run_cell

    train = spec["train"]
    try:
        metrics = run_cell(spec, data, out, {k: int(train[k]) for k in ("batch_size", "grad_accum", "eval_batch_size")},
                           now())
    except Exception as err:  # noqa: BLE001 - reported in the section's row
        return {"rc": 1, "error": {"type": type(err).__name__, "message": str(err)}}
    return {"rc": 0, **metrics}


def finish(proc: subprocess.Popen, out: Path) -> dict:
    rc = proc.wait()
    proc.log.close()
    metrics = out / "metrics.json"
    if rc != 0 or not metrics.is_file():
        failure = out / "failure.json"
        err = json.loads(failure.read_text())["error"] if failure.is_file() else {}
        return {"rc": rc, "error": err or (out / "process.log").read_text()[-1500:]}
    return {"rc": 0, **json.loads(metrics.read_text())}


# ---------------------------------------------------------------- sections


def section_environment(ctx: dict) -> dict:
    import importlib.metadata as md

    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    rec = {"python": platform.python_version(), "versions": versions, "cuda": torch.cuda.is_available(),
           "data": str(ctx["data"]) if ctx["data"] else "synthetic (no GoEmotions copy found)",
           "carried_wheels": os.environ.get("DEVICE_CHECK_CARRIED", "")}
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        x = torch.ones(1024, 1024, device="cuda", dtype=torch.bfloat16)
        (x @ x).sum().item()  # cuBLAS loaded: the context as a training process has it
        free, total = torch.cuda.mem_get_info()
        # what this process holds outside PyTorch's allocator (emogrid.models.devices.CUDA_CONTEXT_MB
        # plans 500 MiB); exact only while nothing else runs on the card
        context = (total - free - torch.cuda.memory_reserved()) / 2**20
        rec.update(device=name, capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                   memory_total_mib=round(total / 2**20), peak_bf16_tflops=ctx["peak"],
                   torch_cuda=torch.version.cuda, cuda_context_mib=round(context))
    else:
        rec.update(device="cpu", peak_bf16_tflops=None)
    return rec


def section_accumulation(ctx: dict) -> dict:
    """16 rows, one optimizer step, three ways: the step-1 loss and gradient norm must agree.
    Full fine-tuning of the BERT-base shape and LoRA on the Qwen2.5-1.5B shape, dropout off (a
    dropout mask drawn per micro-batch differs from one drawn for the whole batch)."""
    from emogrid.training.provenance import now
    from emogrid.training.train import run_cell

    data = subset(ctx, 4, 200, 0)
    small = ctx["out"] / "data" / "accum16"
    if not small.is_dir():  # exactly 16 training rows: one optimizer step at every split
        small.mkdir(parents=True)
        for split, rows in (("train", 16), ("val", 8), ("test", 8)):
            lines = (data / f"{split}.jsonl").read_text().splitlines(keepends=True)[:rows]
            (small / f"{split}.jsonl").write_text("".join(lines))
        shutil.copy(data / "manifest.json", small / "manifest.json")
    rows = []
    for model_name, method in (("bert-base-uncased", "full"), ("qwen2.5-1.5b", "lora")):
        model = build_model(ctx, model_name, dropout=False)
        for bs, acc in ((16, 1), (8, 2), (4, 4)):
            spec = cell_spec(ctx, model, method, 4, 200, batch_size=bs * acc, grad_accum=1, precision="bf16",
                             lr=1e-4, max_grad_norm=1000.0, extra={"lora": {"dropout": 0.0}})
            out = ctx["out"] / "accum" / f"{model_name}-{method}-{bs}x{acc}"
            shutil.rmtree(out, ignore_errors=True)
            run_cell(spec, small, out, {"batch_size": bs, "grad_accum": acc, "eval_batch_size": 16}, now())
            log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
            step1 = next(r for r in log if r.get("step") == 1 and "loss" in r)
            rows.append({"model": model_name, "method": method, "split": f"{bs}x{acc}", "loss": step1["loss"],
                         "grad_norm": step1["grad_norm"]})
            shutil.rmtree(out / ".checkpoint", ignore_errors=True)
    for r in rows:
        ref = next(x for x in rows if x["model"] == r["model"] and x["split"] == "16x1")
        r["loss_rel_diff"] = abs(r["loss"] - ref["loss"]) / abs(ref["loss"])
        r["grad_norm_rel_diff"] = abs(r["grad_norm"] - ref["grad_norm"]) / abs(ref["grad_norm"])
    tolerance = 2e-2  # bf16 autocast: sums in another order round differently
    worst = max(max(r["loss_rel_diff"], r["grad_norm_rel_diff"]) for r in rows)
    return {"rows": rows, "precision": "bf16", "tolerance": tolerance, "max_rel_diff": worst,
            "equal": worst <= tolerance}


def matmul_params(model_dir: Path, k: int) -> int:
    """Weights that multiply activations (every Linear of the classifier, embeddings excluded)."""
    import torch.nn as nn

    from emogrid.planning.structure import build_meta_model

    model, _ = build_meta_model(json.loads((model_dir / "config.json").read_text()), k)
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


def section_methods(ctx: dict) -> dict:
    import importlib.util

    from emogrid.planning.memory import plan_cell_memory

    model = ctx["models"]["llama-3.2-1b"]
    k, n = 8, 800 if not ctx["cpu"] else 120
    data = subset(ctx, k, n, 0)
    n_matmul = matmul_params(model, k)
    rows, skipped = [], {}
    for method in METHODS:
        if method == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
            skipped[method] = "bitsandbytes is not installed (carry its wheel: README)"
            continue
        spec = cell_spec(ctx, model, method, k, n, batch_size=16, eval_batch_size=64)
        out = ctx["out"] / "methods" / method
        shutil.rmtree(out, ignore_errors=True)
        if ctx["cpu"] and method != "full":  # CI-sized: one `emogrid train` process, the rest in this one
            res = in_process(spec, data, out)
        else:
            res = finish(train_process(ctx, spec, data, out), out)
        if res["rc"] != 0:
            rows.append({"method": method, "ok": False, "error": res["error"]})
            continue
        eff = res["efficiency"]
        # like with like: PyTorch's reserved peak against the plan without the CUDA context (CUDA)
        planned = plan_cell_memory(spec, device="cuda" if not ctx["cpu"] else "cpu")
        plan = planned["reserved_peak_mb"] if not ctx["cpu"] else planned["train_peak_mb"]
        # frozen weights need no weight gradients: ~4 N FLOPs per token for adapters, 6 N for full
        flops_per_token = (6 if method == "full" else 4) * n_matmul
        tokens_s = eff["train_tokens_per_second"]
        row = {"method": method, "ok": True, "trainable_params": eff["trainable_params"],
               "train_seconds": eff["train_seconds"], "eval_seconds": eff["eval_seconds"],
               "checkpoint_seconds": eff.get("checkpoint_seconds"), "optimizer_steps": eff["optimizer_steps"],
               "tokens_per_second": tokens_s, "flops_per_token": flops_per_token,
               "peak_memory_mb": eff["peak_memory_mb"], "peak_memory_kind": eff["peak_memory_kind"],
               "peak_reserved_mb": eff.get("peak_memory_reserved_mb"), "planned_mb": round(plan, 1),
               "gpu_plan_ratio_reported": eff.get("gpu_plan_ratio")}
        measured = row["peak_reserved_mb"] if row["peak_reserved_mb"] is not None else row["peak_memory_mb"]
        row["measured_over_plan"] = round(measured / plan, 3) if plan else None
        if row["peak_reserved_mb"] and row["peak_memory_kind"] == "cuda" and row["peak_memory_mb"]:
            # the allocator's slack over live tensors (emogrid.planning.memory.ALLOCATOR_SLACK plans 10%)
            row["reserved_over_allocated"] = round(row["peak_reserved_mb"] / row["peak_memory_mb"], 3)
        row["mfu_pct"] = round(100 * flops_per_token * tokens_s / (ctx["peak"] * 1e12), 2) if ctx["peak"] else None
        rows.append(row)
    return {"model": "llama-3.2-1b" + (" (shrunk)" if ctx["cpu"] else ""), "labels": k, "samples": n,
            "matmul_params": n_matmul, "rows": rows, "skipped": skipped,
            "note": "tokens/s: non-pad training tokens per training second (evaluation and checkpoint "
                    "saves excluded); MFU = FLOPs per token x tokens/s / the card's dense bf16 peak; "
                    "measured over plan: peak reserved (CUDA) over emogrid plan's reserved_peak_mb (the plan "
                    "without the CUDA context), or RSS (CPU) over its train_peak_mb; reserved over allocated: "
                    "the caching allocator's slack"}


def section_packing(ctx: dict) -> dict:
    """8 small cells started at once through gpu-slot: one per GPU at a time vs packed by plan."""
    from emogrid.planning.memory import plan_cell_memory

    model = ctx["models"]["bert-base-uncased"]
    cells = [(k, seed) for k in (2, 4, 8, 16) for seed in (0, 1)]
    if ctx["cpu"]:
        cells = cells[:2]
    n = 200 if ctx["cpu"] else 400
    specs = []
    for k, seed in cells:
        spec = cell_spec(ctx, model, "lora", k, n, seed, batch_size=16)
        specs.append((spec, subset(ctx, k, n, seed)))
    env = dict(ctx["env"])
    env.pop("EMOGRID_GPU_SLOT", None)
    if ctx["cpu"]:  # one fake GPU: the ledger and the locks are real, the cells train on the CPU
        env.pop("CUDA_VISIBLE_DEVICES", None)  # "" would mean no GPU, and gpu-slot would take no lock
        env.update(EMOGRID_GPUS="1", EMOGRID_GPU_MEM_MB="4000")
    modes = []
    for mode in ("one-at-a-time", "auto"):
        locks = ctx["out"] / "packing" / f"locks-{mode}"
        shutil.rmtree(locks.parent / mode, ignore_errors=True)
        shutil.rmtree(locks, ignore_errors=True)
        t0 = time.time()
        procs = []
        for i, (spec, data) in enumerate(specs):
            plan_mb = plan_cell_memory(spec, device="cuda")["train_peak_mb"] * MARGIN
            slot = ["--lock-dir", str(locks), "--cells-per-gpu", "auto" if mode == "auto" else "1",
                    "--mem-mb", f"{plan_mb:.0f}"]
            out = ctx["out"] / "packing" / mode / f"cell{i}"
            procs.append((train_process(ctx, spec, data, out, env=env, slot=slot), out))
        results = [finish(p, out) for p, out in procs]
        wall = time.time() - t0
        ok = [r for r in results if r["rc"] == 0]
        ooms = [r for r in results if r["rc"] != 0 and (r.get("error") or {}).get("type") == "OutOfMemoryError"]
        spans = [(json.loads((out / "metrics.json").read_text())["provenance"]["started"],
                  json.loads((out / "metrics.json").read_text())["provenance"]["finished"])
                 for _, out in procs if (out / "metrics.json").is_file()]
        modes.append({"mode": mode, "cells": len(specs), "finished": len(ok), "ooms": len(ooms),
                      "failures": [r.get("error") for r in results if r["rc"] != 0],
                      "wall_s": round(wall, 1), "cells_per_hour": round(3600 * len(ok) / wall, 1),
                      "max_at_once": max_overlap(spans),
                      "gpu_plan_ratios": [r["efficiency"].get("gpu_plan_ratio") for r in ok]})
    one, auto = modes
    return {"model": "bert-base" + (" (shrunk, 1 fake GPU)" if ctx["cpu"] else ""), "labels_x_seeds": cells,
            "samples": n, "margin": MARGIN, "modes": modes,
            "speedup": round(auto["cells_per_hour"] / one["cells_per_hour"], 2) if one["cells_per_hour"] else None}


def max_overlap(spans: list[tuple[str, str]]) -> int:
    from datetime import datetime

    times = [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in spans]
    return max((sum(1 for s, e in times if s <= start < e) for start, _ in times), default=0)


def section_snakemake(ctx: dict) -> dict:
    """A 4-cell grid through the real Snakefile, the workstation profile and gpu-slot."""
    import importlib.util

    if importlib.util.find_spec("snakemake") is None:
        raise Skip("snakemake is not installed (carry its wheels: README)")
    if ctx["data"] is None:
        raise Skip("the grid prepares its subsets from GoEmotions, and no copy was found (carry it: README)")
    study = ctx["out"] / "snakemake"
    shutil.rmtree(study, ignore_errors=True)
    study.mkdir(parents=True)
    config = study / "study.yaml"
    model = ctx["models"]["bert-base-uncased"]
    config.write_text(
        f"data: {{path: {ctx['data']}}}\n"
        f"grid: {{labels: [2, 4], samples: [{200 if ctx['cpu'] else 400}], models: [m], methods: [lora], "
        f"seeds: [{'0' if ctx['cpu'] else '0, 1'}]}}\n"
        f"models:\n  m: {{path: {model}}}\n"
        "train: {epochs: 1, patience: 0, batch_size: 16}\n"
        "resources: {train: {cpus_per_task: 1, mem_mb: 8000, cells_per_gpu: auto}}\n"
        "results: results\n")  # the study's folder: results/ of the working directory, not results/<study>/
    env = dict(ctx["env"])
    env.pop("EMOGRID_GPU_SLOT", None)
    env["EMOGRID_GPU_LOCK_DIR"] = str(study / "gpu-locks")
    if ctx["cpu"]:
        env.pop("CUDA_VISIBLE_DEVICES", None)
        env.update(EMOGRID_GPU_MEM_MB="4000")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(study / "work"),
           "--configfile", str(ROOT / "config.yaml"), str(config), "--profile", str(ROOT / "profiles" / "workstation"),
           "--until", "train", "--cores", "4", "--resources", "gpu=1", "--scheduler", "greedy"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=study, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    (study / "snakemake.log").write_text(proc.stdout + proc.stderr)
    metrics = sorted((study / "work" / "results" / "runs").glob("**/metrics.json"))
    cells = [json.loads(p.read_text()) for p in metrics]
    rec = {"rc": proc.returncode, "wall_s": round(wall, 1), "cells": len(cells),
           "devices": sorted({c["provenance"]["device"] for c in cells}),
           "train_seconds": [c["efficiency"]["train_seconds"] for c in cells]}
    expected = 2 if ctx["cpu"] else 4
    if proc.returncode != 0 or len(cells) != expected:
        raise RuntimeError(f"snakemake exit {proc.returncode}, {len(cells)} of {expected} cells: "
                           f"{(proc.stdout + proc.stderr)[-2000:]}")
    return rec


# (name, function, seconds it is expected to take on an H100: a section starts only if that fits)
SECTIONS = [("environment", section_environment, 5), ("accumulation", section_accumulation, 60),
            ("methods", section_methods, 200), ("packing", section_packing, 150),
            ("snakemake", section_snakemake, 60)]


# ---------------------------------------------------------------- the report


def markdown(result: dict) -> str:
    env = result["sections"].get("environment", {})
    ver = env.get("versions", {})
    lines = [f"# Device check — {env.get('device', '?')} ({result['mode']})", "",
             f"started {result['started']}, {result.get('wall_s', 0):.0f} s; python {env.get('python')}, "
             f"torch {ver.get('torch')}, transformers {ver.get('transformers')}, peft {ver.get('peft')}, "
             f"dense bf16 peak {env.get('peak_bf16_tflops')} TFLOP/s; data: {env.get('data')}", ""]
    for name, _, _ in SECTIONS[1:]:
        sec = result["sections"].get(name)
        if sec is None:
            continue
        lines.append(f"## {name}: {sec['status']}")
        if sec["status"] != "ok":
            lines += ["", sec.get("reason") or sec.get("error", ""), ""]
            continue
        if name == "accumulation":
            lines += ["", "| model | method | micro x accum | step-1 loss | grad norm | loss rel. diff | "
                      "grad-norm rel. diff |", "|---|---|---|--:|--:|--:|--:|"]
            lines += [f"| {r['model']} | {r['method']} | {r['split']} | {r['loss']:.5f} | {r['grad_norm']:.5f} | "
                      f"{r['loss_rel_diff']:.2e} | {r['grad_norm_rel_diff']:.2e} |" for r in sec["rows"]]
            lines += ["", f"equal within {sec['tolerance']}: {sec['equal']}", ""]
        elif name == "methods":
            lines += ["", f"{sec['model']}, {sec['labels']} labels x {sec['samples']}; {sec['note']}", "",
                      "| method | tokens/s | MFU % | peak MiB (kind) | reserved MiB | plan MiB | measured / plan | "
                      "train s | eval s | ckpt s |", "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
            for r in sec["rows"]:
                if not r["ok"]:
                    lines.append(f"| {r['method']} | failed: {r['error']} |||||||||")
                    continue
                mfu = r["mfu_pct"] if r["mfu_pct"] is not None else "—"
                lines.append(f"| {r['method']} | {r['tokens_per_second']:,.0f} | {mfu} | "
                             f"{r['peak_memory_mb']:,.0f} ({r['peak_memory_kind']}) | {r['peak_reserved_mb'] or '—'} | "
                             f"{r['planned_mb']:,.0f} | {r['measured_over_plan']} | {r['train_seconds']} | "
                             f"{r['eval_seconds']} | {r['checkpoint_seconds']} |")
            lines += [f"- {m}: skipped, {why}" for m, why in sec["skipped"].items()] + [""]
        elif name == "packing":
            lines += ["", f"{sec['model']}, {len(sec['labels_x_seeds'])} LoRA cells, margin {sec['margin']}", "",
                      "| mode | finished | OOMs | wall s | cells/h | most at once |", "|---|--:|--:|--:|--:|--:|"]
            lines += [f"| {m['mode']} | {m['finished']}/{m['cells']} | {m['ooms']} | {m['wall_s']} | "
                      f"{m['cells_per_hour']} | {m['max_at_once']} |" for m in sec["modes"]]
            lines += ["", f"packed / one at a time: {sec['speedup']}x", ""]
        elif name == "snakemake":
            lines += ["", f"exit {sec['rc']}, {sec['cells']} cells in {sec['wall_s']} s on {sec['devices']}", ""]
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path) -> None:
    (out / "device_check.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "device_check.md").write_text(markdown(result))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cpu", action="store_true", help="CI-sized, on the CPU (no GPU needed)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "device_check"))
    ap.add_argument("--budget-s", type=float, default=None,
                    help="stop starting sections that would not fit (default 450 on a GPU, none with --cpu)")
    ap.add_argument("--sections", default=",".join(name for name, _, _ in SECTIONS))
    args = ap.parse_args()
    import torch

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not args.cpu and not torch.cuda.is_available():
        print("device check: no CUDA device here; `run.sh --cpu` runs the CI-sized check", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(0) if not args.cpu else "cpu"
    peak = next((v for k, v in PEAK_BF16_TFLOPS if k in name), None) if not args.cpu else None
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    if args.cpu:
        env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
    ctx = {"cpu": args.cpu, "out": out, "data": find_data(), "peak": peak, "env": env, "models": {}}
    budget = args.budget_s or (float("inf") if args.cpu else 450.0)  # the GPU window is 8 minutes
    t0 = time.time()
    result = {"mode": "cpu" if args.cpu else "gpu", "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "budget_s": budget, "sections": {}}
    wanted = args.sections.split(",")
    for sec_name, fn, estimate in SECTIONS:
        if sec_name not in wanted:
            continue
        left = budget - (time.time() - t0)
        if sec_name != "environment" and left < estimate:
            result["sections"][sec_name] = {"status": "skipped", "reason": f"time budget: {left:.0f} s left, "
                                                                           f"needs about {estimate} s"}
            continue
        s0 = time.time()
        try:
            if sec_name in ("packing", "snakemake") and "bert-base-uncased" not in ctx["models"]:
                ctx["models"]["bert-base-uncased"] = build_model(ctx, "bert-base-uncased")
            if sec_name == "methods":
                ctx["models"]["llama-3.2-1b"] = build_model(ctx, "llama-3.2-1b")
            result["sections"][sec_name] = {"status": "ok", **fn(ctx)}
        except Skip as why:
            result["sections"][sec_name] = {"status": "skipped", "reason": str(why)}
        except Exception as err:  # noqa: BLE001 - one section's failure must not lose the others
            result["sections"][sec_name] = {"status": "failed", "error": f"{type(err).__name__}: {err}",
                                            "traceback": traceback.format_exc()[-3000:]}
        result["sections"][sec_name]["seconds"] = round(time.time() - s0, 1)
        result["wall_s"] = round(time.time() - t0, 1)
        write(result, out)
        print(f"device check: {sec_name}: {result['sections'][sec_name]['status']} "
              f"({result['sections'][sec_name]['seconds']} s)", flush=True)
    result["wall_s"] = round(time.time() - t0, 1)
    write(result, out)
    print(markdown(result))
    return 1 if any(s["status"] == "failed" for s in result["sections"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
