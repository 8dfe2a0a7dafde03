"""The memory model: a cell's training and inference memory (MiB), and the GPUs it needs.

Per cell, broken down like the tables of the LoRA/QLoRA papers:
- weights: frozen + trainable parameters at the cell's precision. nf4: 0.5 byte/param plus one
  fp32 absmax per 64 weights, or with double quantisation one 8-bit absmax per 64 plus one fp32
  per 256 absmax blocks (+ the 256-entry code); int8: 1 byte/param + one fp32 scale per output
  row. Not quantised: embeddings, norms, the classification head (and anything that isn't a
  Linear/Conv1D). Unquantised weights follow the loader (emogrid.models.loading.base_weights_dtype):
  fp32 for full fine-tuning and on CPU, bf16 for a frozen base on a bf16 device; whatever
  trains is fp32 (peft upcasts adapters, emogrid upcasts a copied head).
- gradients: one per trainable parameter, in its dtype.
- optimizer: AdamW 32-bit keeps two states per trainable parameter (in its dtype);
  bitsandbytes 8-bit AdamW keeps two uint8 states + an fp32 absmax per 256 values, for tensors
  of >= 4096 values (smaller ones stay 32-bit, as bnb does).
- activations: the bytes autograd saves for backward, measured by running the cell's model
  forward on the meta device under `saved_tensors_hooks` at the cell's batch size and the
  longest padded sequence it will see (dynamic padding: min(max_length, longest example),
  emogrid.planning.tokens). Exact for the architecture and method (frozen layers before the
  first adapter save nothing); only what the graph still holds at the end of the forward counts.
- transient: backward workspace (2x the largest saved tensor + logits), DoRA's per-layer
  weight-norm temporaries during the forward (dora_transient_bytes), and the optimizer step's
  temporaries (none for the fused AdamW on CUDA; two of the largest tensor for a per-tensor step).
- overhead: the CUDA context (outside PyTorch's allocator) and the allocator's workspaces,
  slack and page rounding (gpu_overhead_bytes) on CUDA; nothing on the CPU (the estimate is the
  model's share of the process, compare against RSS growth). `reserved_peak_mb` is the peak
  without the context: what torch.cuda.max_memory_reserved should show.
- autocast (bf16/fp16, unquantised): the forward is traced under autocast over the weights in
  their loaded dtypes, so the half-precision copies of fp32 weights (full fine-tuning) and of
  each matmul's fp32 input are counted; evaluation holds the cached weight copies too.
- inference: weights + the largest live set of one layer's forward at `eval_batch_size`
  (hidden states, MLP intermediates, attention scores, KV cache for decoders, DoRA's weight
  norm) + logits.
A cell too big for one GPU: full fine-tuning is sharded (FSDP) over 2, 4 or 8 (gpus_for).
"""

from __future__ import annotations

import math

from emogrid.models.devices import CUDA_CONTEXT_MB
from emogrid.models.loading import base_weights_dtype
from emogrid.planning.structure import checkpoint_dtype, meta_structure, model_config_dict, structure, structure_key
from emogrid.planning.tokens import DEFAULT_TOKEN_STATS
from emogrid.scheduling.resources import DEFAULT_SAFETY_MARGIN
from emogrid.study.spec_sections import MethodSpec, TrainRecipe

MIB = 2 ** 20
# GPU memory besides the tensors (device="cuda"), per process:
# - the CUDA context and loaded kernels (emogrid.models.devices.CUDA_CONTEXT_MB): outside PyTorch's
#   caching allocator, so torch.cuda.max_memory_reserved never shows it (nvidia-smi does);
# - cuBLAS/cuBLASLt workspaces, taken through the caching allocator;
# - the allocator's own slack: blocks are cached once freed and reused only for requests that
#   fit them, and dynamic padding asks for different sizes every step, so what it reserves
#   runs ahead of what tensors hold. gpu-slot exports PYTORCH_CUDA_ALLOC_CONF=
#   expandable_segments:True (segments grow in 20 MiB pages, 2 MiB for small blocks, instead of one
#   cudaMalloc per size), which keeps that gap small; ALLOCATOR_SLACK is our allowance for it
#   until the device check (bench/device_check) measures max_memory_reserved over
#   max_memory_allocated, plus one partly used page of each pool (rounding).
CUBLAS_WORKSPACE_MB = 100.0
ALLOCATOR_SLACK = 0.10
ALLOCATOR_PAGES_MB = 20.0 + 2.0
# Host RSS of the training process before the model: python + torch + transformers + peft
# (measured 440 MB on CPU); with CUDA the driver and kernels add ~2.5 GB of host memory.
HOST_RUNTIME_MB = {"cpu": 500.0, "cuda": 3000.0}
NF4_BLOCK, NF4_DQ_BLOCK = 64, 256
ADAM8_BLOCK, ADAM8_MIN_SIZE = 256, 4096
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
GPU_COUNTS = (1, 2, 4, 8)  # GPUs of one node a cell may be spread over

# structure key + (batch, seq) -> saved-activation bytes
_act_cache: dict[tuple, dict] = {}


def resolve_precision(train: TrainRecipe, device: str) -> str:
    p = train.precision
    if p == "auto":
        return "bf16" if device == "cuda" else "fp32"
    return p


# ----------------------------------------------------------------------------- activations

class _Packed:
    """What the saved-tensor hook hands autograd: lives exactly as long as the graph node that saved it."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor):
        self.tensor = tensor


def _trace_activations(model, family: str, batch: int, seq: int, autocast: str | None = None) -> dict:
    """Bytes autograd saves for backward in one forward pass on the meta device.

    `autocast` ("bf16"/"fp16"): the forward runs as the Trainer runs it, under autocast, over
    the weights in the dtypes the loader gives them. Autocast does nothing to meta tensors, so
    the model is copied onto fake CPU tensors (FakeTensorMode: shapes and dtypes, no memory)
    and traced under CPU autocast. That counts what a pure-bf16 trace misses: the bf16 copies
    autocast makes of fp32 weights (full fine-tuning: one of every matmul weight, saved for
    backward) and of each matmul's fp32 input (the residual stream stays fp32).

    Counts each storage once among the tensors the graph still holds when the forward returns.
    Tensors saved by a subgraph that died during the forward (peft's DoRA builds its weight-norm
    subgraph with gradients on and only keeps its detached result) are not in it. The storage of
    every packed tensor is kept referenced until the count, so no storage address is reused
    mid-trace: keying by address alone let a later, live tensor be taken for a dead one and
    skipped, at random. (Storages, not tensors: a tensor holds its grad_fn, and with it the
    tensors that node saved -- holding it would keep a dead subgraph's saves alive. For the same
    reason the hook hands autograd a detached alias: a saved output would otherwise hold its own
    node in a reference cycle, dead or not.) Python's cycle collector is paused for the trace, so
    whatever else a model leaves in cycles counts the same way every time; no backward runs here.
    """
    import contextlib
    import copy
    import gc
    import weakref

    import torch

    device, fake, cast = "meta", contextlib.nullcontext(), contextlib.nullcontext()
    if autocast is not None:
        from torch._subclasses.fake_tensor import FakeTensorMode

        device, fake = "cpu", FakeTensorMode(allow_non_fake_inputs=True)
        cast = torch.autocast("cpu", dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[autocast])
        model = copy.deepcopy(model)  # the cached meta model stays on the meta device
        with fake:
            model.to_empty(device="cpu")
    model.train()
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    keep: list = []  # no packed storage is freed (and its address reused) mid-trace
    packed: list[tuple[weakref.ref, object, int]] = []

    def pack(t):
        try:
            st = t.untyped_storage()
            key, nbytes = st._cdata, st.nbytes()
            keep.append(st)
        except Exception:  # not storage-backed (e.g. a subclass): count its own bytes
            key, nbytes = id(t), t.numel() * t.element_size()
            keep.append(t)
        holder = _Packed(t.detach())
        if key not in params:
            packed.append((weakref.ref(holder), key, nbytes))
        return holder

    def unpack(holder):
        return holder.tensor

    gc_enabled = gc.isenabled()
    gc.disable()
    try:
        with fake, cast, torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            ids = torch.zeros(batch, seq, dtype=torch.long, device=device)
            labels = torch.zeros(batch, dtype=torch.long, device=device)
            try:
                out = model(input_ids=ids, labels=labels)
            except RuntimeError:
                # Some heads inspect input_ids with Python control flow (impossible on meta):
                # feed the embeddings instead, the rest of the graph is identical.
                packed.clear()
                keep.clear()
                emb = model.get_input_embeddings()(ids)
                out = model(inputs_embeds=emb, labels=labels)
        saved: dict[int, int] = {}
        for ref, key, nbytes in packed:
            if ref() is not None:
                saved.setdefault(key, nbytes)
    finally:
        if gc_enabled:
            gc.enable()
    logits_bytes = out.logits.numel() * out.logits.element_size()
    return {"saved_bytes": sum(saved.values()), "largest_bytes": max(saved.values(), default=0),
            "logits_bytes": logits_bytes,
            "autocast_copy_bytes": _autocast_copy_bytes(model, autocast) if autocast is not None else 0}


def _autocast_copy_bytes(model, autocast: str) -> int:
    """Bytes of the half-precision copies autocast caches during one forward: one of each fp32
    Linear/Conv1D weight and bias that requires grad (autocast caches casts of such leaves until
    its region ends). Frozen fp32 weights are cast on every use and freed at once."""
    import torch

    total = 0
    for mod in model.modules():
        if not (isinstance(mod, torch.nn.Linear) or type(mod).__name__ == "Conv1D"):
            continue
        for param in mod.parameters(recurse=False):
            if param.requires_grad and param.dtype == torch.float32:
                total += param.numel() * DTYPE_BYTES[autocast]
    return total


def _dora_modules(model) -> list[tuple[int, int, int, int, bool]]:
    """(in_features, out_features, r, adapter dtype bytes, base weight in another dtype) of each
    DoRA-wrapped Linear/Conv1D of a peft model; [] without DoRA."""
    out = []
    for mod in model.modules():
        mags = getattr(mod, "lora_magnitude_vector", None)
        if not mags:
            continue
        base_w = mod.get_base_layer().weight
        for name in mags:
            a = mod.lora_A[name].weight  # (r, in)
            b = mod.lora_B[name].weight  # (out, r)
            out.append((a.shape[1], b.shape[0], a.shape[0], a.element_size(), base_w.dtype != a.dtype))
    return out


def dora_transient_bytes(modules, quantized: bool) -> tuple[int, int]:
    """Bytes peft's DoRA allocates and frees inside one adapted layer's forward: (training, eval).

    Each forward rebuilds the layer's weight norm ||W + s*B@A|| (peft's DoraLinearLayer), at the
    adapters' dtype (peft casts the layer input to it): an identity matrix in x in (peft computes
    B@A as lora_B(lora_A(eye)) for FSDP), lora_A(eye) in x r, lora_weight out x in, the base
    weight cast to that dtype (a copy unless the base already has it; dequantised if quantised),
    s*lora_weight and W + s*lora_weight (out x in each). In training lora_weight keeps its small
    graph -- eye included -- until the layer returns, so all of it is live at once; under no_grad
    the eye is freed once lora_weight is built. None of it is saved for backward (the norm is detached),
    so the trace does not see it. Checked against the peak RSS growth of one DoRA Linear forward
    on the CPU (tests/planning/test_planning_memory.py): 4096->1024 fp32 112.25 MiB, bf16 base 128.25 MiB,
    NF4 base 128.25 MiB, no_grad eval 80.25 MiB (model and measurement agree within 0.5 MiB).
    The largest layer's set counts once: layers run one at a time.
    """
    train = evalb = 0
    for fin, fout, r, ab, cast in modules:
        copies = 3 + (1 if cast or quantized else 0)  # lora_weight, [weight copy], s*lw, W + s*lw
        train = max(train, (fin * fin + fin * r + copies * fout * fin) * ab)
        evalb = max(evalb, max(fin * fin + fin * r + fout * fin, copies * fout * fin) * ab)
    return train, evalb


def _activation_bytes(cfg_key: str, cfg_dict: dict, spec: dict, k: int, dtype: str, batch: int, seq: int,
                      autocast: str | None = None) -> dict:
    """The trace of a model built in `dtype` (its weights' dtype under `autocast`)."""
    key = structure_key(cfg_dict, cfg_key, spec, dtype) + (batch, seq, autocast)  # the head width barely matters
    if key not in _act_cache:
        st = meta_structure(cfg_dict, cfg_key, spec, k, dtype)
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            _act_cache[key] = {**_trace_activations(st["_model"], st["family"], batch, seq, autocast),
                               "dora_modules": _dora_modules(st["_model"])}
        finally:
            hf_logging.set_verbosity(level)
    return _act_cache[key]


# ----------------------------------------------------------------------------- one cell

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
    host_mem_mb: the job's host RAM (on a GPU the runtime + the larger of host_load_mb and
    host_save_mb, host_staging_bytes; on a CPU everything).
    `train_peak_mb` is GPU memory for device="cuda" (what `torch.cuda.max_memory_reserved`
    plus the CUDA context would show: tensor_peak_mb + allocator_mb + context_mb;
    `reserved_peak_mb` leaves the context out), the model's share of RSS for device="cpu".
    """
    train = TrainRecipe.from_spec(spec)
    method = MethodSpec.from_spec(spec)
    k = int(spec["cell"]["labels"])
    # `token_stats`: a dict, or a function of the spec (per dataset: tokens.dataset_token_stats)
    stats = (token_stats(spec) if callable(token_stats) else token_stats) or DEFAULT_TOKEN_STATS
    cfg_dict, src = model_config_dict(spec["model"])
    precision = resolve_precision(train, device)
    quantize = method.quantize
    if weights_dtype is None:
        # the loader's rule: trained weights fp32, a frozen base bf16 on a bf16 device
        weights_dtype = base_weights_dtype(spec, cuda=device == "cuda")
        if quantize != "none":
            # peft's prepare_model_for_kbit_training casts every non-quantised parameter to fp32
            # (embeddings, norms): they, and the residual stream, are fp32 in a QLoRA cell.
            weights_dtype = "fp32"
    st = structure(cfg_dict, src, spec, k, weights_dtype)
    optim = train.optim  # the grid folds a method's optimizer (QLoRA: adamw_8bit) into train.optim
    batch = train.batch_size
    seq = int(min(train.max_length, int(stats["max"])))

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

    # activations at the peak sequence length. bf16/fp16: traced under autocast over the loaded
    # weights (with their bf16 copies; _trace_activations). Quantised cells: bitsandbytes casts
    # inside its own matmul and saves no weight copy, so they are traced unquantised in fp32.
    act_dtype = "fp32" if precision == "fp32" or quantize != "none" else precision
    autocast = act_dtype if act_dtype != "fp32" else None
    act = _activation_bytes(src, cfg_dict, spec, k, weights_dtype if autocast else act_dtype, batch, seq, autocast)
    transient_bwd = 2 * act["largest_bytes"] + act["logits_bytes"]
    # DoRA: the weight-norm temporaries of one layer, live during its forward on top of what the
    # earlier layers saved (dora_transient_bytes); forward and backward peaks never coincide.
    dora_train, dora_eval = dora_transient_bytes(act["dora_modules"], quantize != "none")
    transient_act = max(transient_bwd, dora_train)
    largest_trainable = max((n * DTYPE_BYTES[dt] for _, n, dt, _ in tensors), default=0)
    if device == "cuda" and optim == "adamw":
        step_tmp = 0  # fused AdamW on CUDA (emogrid.training.arguments): one kernel, in place
    else:
        step_tmp = 2 * largest_trainable  # per-tensor update (CPU loop, bnb 8-bit in place)

    # inference: weights at eval precision + one layer's live set at eval_batch_size
    arch = _arch(cfg_dict)
    eb = train.eval_batch_size
    ab = DTYPE_BYTES[act_dtype]
    tokens = eb * seq
    live = tokens * (4 * arch["hidden"] + (3 if arch["gated"] else 2) * arch["ffn"]) * ab
    live += eb * arch["heads"] * seq * seq * ab * 2
    kv = (2 * arch["layers"] * tokens * arch["kv_heads"] * arch["head_dim"] * ab) if arch["decoder"] else 0
    live += dora_eval
    # under autocast every fp32 weight that feeds a matmul gets a bf16 copy, cached until the
    # forward returns -- in evaluation too (the cache keys on requires_grad, not on grad mode)
    live += act["autocast_copy_bytes"]

    # training peak: backward (activations + workspace) or the optimizer step, whichever is
    # larger; the periodic evaluation runs inside the same process with the optimizer state held.
    train_part = weights + grads + opt + max(act["saved_bytes"] + transient_act, step_tmp)
    eval_part = weights + opt + live + kv
    tensor_peak = max(train_part, eval_part)
    allocator, context = gpu_overhead_bytes(tensor_peak) if device == "cuda" else (0, 0)
    peak = tensor_peak + allocator + context
    infer_tensors = weights + live + kv
    infer = infer_tensors + sum(gpu_overhead_bytes(infer_tensors)) if device == "cuda" else infer_tensors
    host_load, host_save = host_staging_bytes(st, cfg_dict, spec, weights_dtype, trainable_bytes)
    # host RAM of the job (SLURM mem_mb): the runtime plus, on a GPU, the larger of the weights
    # staged while loading and the copy made at each save -- on a CPU the whole training peak.
    if device == "cuda":
        host = HOST_RUNTIME_MB["cuda"] * MIB + max(host_load, host_save)
    else:
        host = HOST_RUNTIME_MB["cpu"] * MIB + max(peak, host_load)

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
        "transient_mb": mb(max(transient_act, step_tmp)),
        "tensor_peak_mb": mb(tensor_peak),
        "allocator_mb": mb(allocator),
        "context_mb": mb(context),
        "overhead_mb": mb(allocator + context),
        "reserved_peak_mb": mb(tensor_peak + allocator),
        "train_peak_mb": mb(peak),
        "inference_mb": mb(infer),
        "host_load_mb": mb(host_load),
        "host_save_mb": mb(host_save),
        "host_mem_mb": mb(host),
    }


def gpu_overhead_bytes(tensor_bytes: float) -> tuple[float, float]:
    """(allocator, context) bytes a CUDA process holds beyond `tensor_bytes` of live tensors:
    workspaces + slack + page rounding inside PyTorch's caching allocator (what
    max_memory_reserved adds to max_memory_allocated), and the CUDA context outside it."""
    allocator = CUBLAS_WORKSPACE_MB * MIB + ALLOCATOR_SLACK * tensor_bytes + ALLOCATOR_PAGES_MB * MIB
    return allocator, CUDA_CONTEXT_MB * MIB


def host_staging_bytes(st: dict, cfg_dict: dict, spec: dict, weights_dtype: str, trainable_bytes: int) -> tuple:
    """(load, save) bytes of host memory the model passes through on its way to and from a GPU.

    Load: transformers maps the checkpoint (its stored dtype) and builds the model on the host
    in the dtype it trains in before the Trainer moves it to the GPU -- both at once (full
    fine-tuning of a bf16 checkpoint: 2 + 4 bytes per parameter; measured on the CPU in
    tests/test_planning_memory.py). A quantised model is placed on the GPU while loading
    (device_map): only the mapped checkpoint. Save: safetensors copies every tensor of a shard
    to the host and holds them until the shard is written (transformers' shards are 50 GB), so
    each checkpoint of a full fine-tuning cell holds its whole fp32 model in host memory; an
    adapter cell saves only what trains."""
    ckpt = st["total"] * DTYPE_BYTES[checkpoint_dtype(cfg_dict)]
    built = 0 if MethodSpec.from_spec(spec).quantize != "none" else st["total"] * DTYPE_BYTES[weights_dtype]
    saved = st["total"] * DTYPE_BYTES[weights_dtype] if MethodSpec.from_spec(spec).peft == "full" else trainable_bytes
    return ckpt + built, saved


# ----------------------------------------------------------------------------- GPUs

def sharded_peak_mb(est: dict, gpus: int, layers: int) -> float:
    """GPU peak per device of a full fine-tuning cell under FSDP full sharding over `gpus`:
    weights, gradients, optimizer state, activations and temporaries split N ways (each process
    trains batch/N), plus the unsharded copy of about two layers' weights that FSDP gathers
    (the current layer and the prefetched next), plus the allocator's share and the CUDA context."""
    return _sharded(est, gpus, layers)["train_peak_mb"]


def _sharded(est: dict, gpus: int, layers: int) -> dict:
    if gpus <= 1:
        return {k: est[k] for k in ("tensor_peak_mb", "reserved_peak_mb", "train_peak_mb")}
    gathered = 2 * est["weights_mb"] / max(layers, 1)
    return _on_gpu((est["tensor_peak_mb"] / gpus + gathered) * MIB)


def _on_gpu(tensors: float) -> dict:
    """A GPU peak of `tensors` bytes of live tensors, with the allocator's share and the context."""
    allocator, context = gpu_overhead_bytes(tensors)
    return {"tensor_peak_mb": round(tensors / MIB, 1), "reserved_peak_mb": round((tensors + allocator) / MIB, 1),
            "train_peak_mb": round((tensors + allocator + context) / MIB, 1)}


def per_gpu_plan(spec: dict, *, batch: dict | None = None, processes: int = 1, parallel: str = "single",
                 token_stats: dict | None = None) -> dict:
    """The plan of one GPU of a cell as it ran: this attempt's batches (a retry halves them) and,
    over several processes, each one's part -- DDP: the whole model at batch/N plus the
    gradient buckets DDP keeps beside the gradients; FSDP: the sharded plan (sharded_peak_mb).
    {tensor_peak_mb, reserved_peak_mb (what max_memory_reserved should show), train_peak_mb}."""
    import copy

    spec = copy.deepcopy(spec)
    train = spec["train"]
    if batch:
        train["batch_size"] = int(batch["batch_size"])
        train["eval_batch_size"] = int(batch.get("eval_batch_size", train["eval_batch_size"]))
    processes = max(int(processes), 1)
    if parallel == "ddp" and processes > 1:
        train["batch_size"] = max(int(train["batch_size"]) // processes, 1)
        est = plan_cell_memory(spec, token_stats=token_stats)
        return _on_gpu((est["tensor_peak_mb"] + est["gradients_mb"]) * MIB)
    est = plan_cell_memory(spec, token_stats=token_stats)
    if parallel == "fsdp" and processes > 1:
        return _sharded(est, processes, _arch(model_config_dict(spec["model"])[0])["layers"])
    return {k: est[k] for k in ("tensor_peak_mb", "reserved_peak_mb", "train_peak_mb")}


def gpus_for(spec: dict, gpu_mem_mb: float, *, margin: float = DEFAULT_SAFETY_MARGIN, max_gpus: int = 8,
             token_stats: dict | None = None) -> int | None:
    """Fewest GPUs (1, 2, 4, 8; at most max_gpus; dividing train.batch_size) whose memory holds the
    cell x `margin`, or None. Only full fine-tuning is sharded (FSDP); an adapter cell under DDP
    needs its whole footprint on every GPU, so it either fits one GPU or none."""
    est = plan_cell_memory(spec, device="cuda", token_stats=token_stats)
    if est["train_peak_mb"] * margin <= gpu_mem_mb:
        return 1
    if MethodSpec.from_spec(spec).peft != "full":
        return None
    layers = _arch(model_config_dict(spec["model"])[0])["layers"]
    batch = TrainRecipe.from_spec(spec).batch_size
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
