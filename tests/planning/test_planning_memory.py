"""emogrid.planning.memory: the memory breakdown, QLoRA weight bytes equal to bitsandbytes',
the pre-flight fit check, and spreading a full fine-tuning cell over several GPUs."""

from __future__ import annotations

import json

import pytest

from emogrid.planning.memory import check_fit, gpus_for, plan_cell_memory, sharded_peak_mb
from tests.plan_specs import K, make_spec


def test_memory_breakdown_is_consistent():
    model = {"name": "llama-3.2-1b", "id": None, "path": None}
    spec = make_spec(model, "lora", k=4, r=16)
    spec["train"]["precision"] = "auto"
    lora = plan_cell_memory(spec)
    q = dict(spec, method={**spec["method"], "quantize": "nf4"}, train={**spec["train"], "optim": "adamw_8bit"})
    qlora = plan_cell_memory(q)
    full = plan_cell_memory(make_spec(model, "full", k=4) | {"train": {**spec["train"]}})
    assert qlora["trainable_params"] == lora["trainable_params"]
    assert qlora["weights_mb"] < min(lora["weights_mb"], full["weights_mb"])
    assert qlora["optimizer_mb"] < lora["optimizer_mb"] < full["optimizer_mb"]
    assert full["train_peak_mb"] > lora["train_peak_mb"]
    # Adam 32-bit: two fp32 states per trainable parameter (adapters are fp32)
    assert lora["optimizer_mb"] == pytest.approx(2 * lora["trainable_mb"], rel=1e-3)


def test_check_fit_reports_cells_that_do_not_fit():
    model = {"name": "gpt2-xl", "id": None, "path": None}
    spec = make_spec(model, "full", k=4)
    spec["train"]["precision"] = "auto"
    assert check_fit([spec], gpu_mem_mb=8000)[0]["cell_id"] == "x/full"
    est = plan_cell_memory(spec)["train_peak_mb"]
    assert check_fit([spec], gpu_mem_mb=est * 1.1, margin=1.2) != []
    assert check_fit([spec], gpu_mem_mb=est * 1.3, margin=1.2) == []
    assert check_fit([spec], gpu_mem_mb=200_000) == []



@pytest.mark.parametrize("double_quant", [True, False])
def test_nf4_weight_bytes_equal_bitsandbytes(tiny_models, double_quant):
    """QLoRA weights: packed 4-bit + absmax (nested or not) + fp32 rest == the real bnb model."""
    from emogrid.models.adapters import apply_method
    from emogrid.models.loading import load_model

    spec = make_spec({"name": "tiny-llama", "id": None, "path": str(tiny_models["llama"])}, "qlora")
    spec["quant"]["double_quant"] = double_quant
    model, _tok, family = load_model(spec, K)
    model = apply_method(model, spec, family)
    import bitsandbytes as bnb

    real = sum(p.numel() * p.element_size() for p in model.parameters())
    for mod in model.modules():
        qs = mod.weight.quant_state if isinstance(mod, bnb.nn.Linear4bit) else None  # not peft's wrappers
        if qs is not None:
            real += qs.absmax.numel() * qs.absmax.element_size()
            if qs.state2 is not None:
                real += qs.state2.absmax.numel() * qs.state2.absmax.element_size()
    assert plan_cell_memory(spec, device="cpu")["weights_bytes"] == real



def test_planner_spreads_a_full_finetuning_cell_that_fits_no_single_gpu():
    model = {"name": "llama-3.2-1b", "id": None, "path": None}
    full = make_spec(model, "full", k=4)
    full["train"].update(precision="auto", batch_size=8)
    est = plan_cell_memory(full)
    two = sharded_peak_mb(est, 2, 16)
    four = sharded_peak_mb(est, 4, 16)
    assert four < two < est["train_peak_mb"]
    assert gpus_for(full, est["train_peak_mb"] * 1.3, margin=1.2) == 1
    assert gpus_for(full, two * 1.25, margin=1.2) == 2
    assert gpus_for(full, four * 1.25, margin=1.2) == 4
    assert gpus_for(full, four * 1.25, margin=1.2, max_gpus=2) is None
    assert gpus_for(full, 100.0, margin=1.2) is None
    odd = json.loads(json.dumps(full))
    odd["train"]["batch_size"] = 6  # 4 does not divide it: 8 would be next, and 8 does not either
    assert gpus_for(odd, four * 1.25, margin=1.2) is None
    # adapters under DDP keep their whole footprint on each GPU: no spreading
    lora = make_spec(model, "lora", k=4)
    lora["train"].update(precision="auto", batch_size=8)
    small = plan_cell_memory(lora)["train_peak_mb"]
    assert gpus_for(lora, small * 0.9, margin=1.0) is None
    # the pre-flight check accepts what fits over several GPUs only when allowed to
    assert check_fit([full], gpu_mem_mb=two * 1.25, margin=1.2) != []
    assert check_fit([full], gpu_mem_mb=two * 1.25, margin=1.2, max_gpus=2) == []


def test_lora_dropout_is_in_the_activations_not_shared_from_the_cache():
    """Dropout > 0 saves its masks for backward: a cell with dropout plans more activation
    memory than the same cell without, even when the dropout-free one was planned (and cached)
    first in this process."""
    from emogrid.planning import memory, structure

    structure._count_cache.clear()
    memory._act_cache.clear()
    model = {"name": "bert-base-uncased", "id": None, "path": None}
    plain = make_spec(model, "lora", k=4, r=16)
    plain["lora"]["dropout"] = 0.0
    dropped = make_spec(model, "lora", k=4, r=16)
    dropped["lora"]["dropout"] = 0.1
    without = plan_cell_memory(plain, device="cpu")
    with_dropout = plan_cell_memory(dropped, device="cpu")
    assert with_dropout["trainable_params"] == without["trainable_params"]
    assert with_dropout["activations_mb"] > without["activations_mb"]


def _trace(spec: dict, batch: int, seq: int) -> dict:
    from emogrid.planning.memory import _trace_activations
    from emogrid.planning.structure import meta_structure, model_config_dict

    cfg, src = model_config_dict(spec["model"])
    st = meta_structure(cfg, src, spec, K, "fp32")
    return _trace_activations(st["_model"], st["family"], batch, seq)


def test_dora_activation_trace_is_deterministic():
    """peft's DoRA saves tensors in a subgraph that dies mid-forward; their storage addresses
    must not make later, live saves look like duplicates (that made the count random)."""
    spec = make_spec({"name": "bert-base-uncased", "id": None, "path": None}, "dora", r=16)
    counts = [_trace(spec, 4, 32)["saved_bytes"] for _ in range(3)]
    assert counts[0] > 0
    assert counts == [counts[0]] * 3, counts


def test_trace_counts_only_the_saves_the_graph_still_holds():
    """A model that, like DoRA, saves tensors in a subgraph it then drops (only a detached result
    is kept): exactly the live chain's saved bytes count, every time."""
    import types

    import torch
    from torch import nn

    from emogrid.planning.memory import _trace_activations

    width, steps, batch = 64, 40, 4

    class DeadSubgraphs(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.empty(width, width, device="meta"))

        def forward(self, input_ids, labels):
            h = input_ids[:, :1].float().expand(batch, width)  # (batch, width), no grad
            for _ in range(steps):
                eye = torch.eye(width, device="meta")
                # like DoRA's lora_B(lora_A(eye)): the mms save `eye` and `eye @ w` (whose grad_fn
                # holds the first save); only a detached result survives, so both nodes die here
                _norm = ((eye @ self.w) @ self.w).detach()
                h = torch.tanh(h @ self.w)  # saves h (mm) and tanh's output (the next h)
            return types.SimpleNamespace(logits=h)

    model = DeadSubgraphs()
    row = batch * width * 4
    # the first h is an expanded view of a (batch, 1) fp32 column; then one (batch, width) per step
    expected = batch * 4 + steps * row
    for _ in range(3):
        got = _trace_activations(model, "toy", batch, 8)
        assert got["saved_bytes"] == expected, (got, expected)
        assert got["largest_bytes"] == row


_DORA_LAYER_RSS = """
import json, sys, torch, peft
from torch import nn
fin, fout, base_dtype = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
torch.set_num_threads(1)
class M(nn.Module):
    def __init__(self):
        super().__init__()
        if base_dtype == "nf4":  # bitsandbytes 4-bit base, bf16 compute: quantised on the CPU
            import bitsandbytes as bnb
            self.lin = bnb.nn.Linear4bit(fin, fout, compute_dtype=torch.bfloat16, quant_type="nf4")
            self.lin.weight = bnb.nn.Params4bit(torch.randn(fout, fin), requires_grad=False,
                                                quant_type="nf4").to("cpu")
            assert self.lin.weight.quant_state is not None
        else:
            self.lin = nn.Linear(fin, fout).to(getattr(torch, base_dtype))
    def forward(self, x):
        return self.lin(x)
m = peft.get_peft_model(M(), peft.LoraConfig(r=16, lora_alpha=32, target_modules=["lin"], use_dora=True))
m.train()
x = torch.randn(1, fin, dtype=torch.float32 if base_dtype == "float32" else torch.bfloat16)
m(x)  # first call: lazy allocations of the runtime
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
def peak_growth(run):
    base = rss()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak RSS to the current RSS
    run()
    return hwm() - base
train = peak_growth(lambda: m(x))
m.eval()
with torch.no_grad():
    evaluation = peak_growth(lambda: m(x))
print(json.dumps({"train": train, "eval": evaluation}))
"""


@pytest.mark.parametrize("base_dtype", ["float32", "bfloat16", "nf4"])
def test_dora_transient_matches_the_measured_peak_of_one_layer(base_dtype):
    """dora_transient_bytes against the peak RSS growth of one real DoRA Linear forward on the
    CPU, training and no_grad eval (4096 -> 1024: the identity alone is 64 MiB). bf16 base:
    peft computes the norm in the adapters' fp32, so the base weight is copied once more; an NF4
    base is dequantised into that copy."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux /proc/self/clear_refs to reset the peak RSS")
    import torch

    from emogrid.planning.memory import _dora_modules, dora_transient_bytes

    fin, fout = 4096, 1024
    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    proc = subprocess.run([sys.executable, "-c", _DORA_LAYER_RSS, str(fin), str(fout), base_dtype],
                          capture_output=True, text=True, env=env, timeout=120, cwd=Path(__file__).parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    measured = json.loads(proc.stdout.strip().splitlines()[-1])

    import peft
    from torch import nn

    quantized = base_dtype == "nf4"
    with torch.device("meta"):  # the planner's view: quantisation is accounted for, not built
        lin = nn.Sequential(nn.Linear(fin, fout, dtype=torch.float32 if quantized else getattr(torch, base_dtype)))
    model = peft.get_peft_model(lin, peft.LoraConfig(r=16, lora_alpha=32, target_modules=["0"], use_dora=True))
    mods = _dora_modules(model)
    assert mods == [(fin, fout, 16, 4, base_dtype == "bfloat16")]
    train_bytes, eval_bytes = dora_transient_bytes(mods, quantized=quantized)
    mib = {k: round(v / 2**20, 2) for k, v in measured.items()}
    print(f"DoRA layer {fin}->{fout} {base_dtype}: train model {train_bytes / 2**20:.2f} MiB, measured "
          f"{mib['train']}; eval model {eval_bytes / 2**20:.2f}, measured {mib['eval']}")
    assert measured["train"] == pytest.approx(train_bytes, rel=0.05)
    assert measured["eval"] == pytest.approx(eval_bytes, rel=0.05)


def test_dora_only_changes_dora_cells():
    """The DoRA weight-norm term is 0 for plain LoRA: same spec, use_dora off, same transient as
    before the term existed (backward workspace or optimizer step)."""
    from emogrid.planning.memory import dora_transient_bytes

    assert dora_transient_bytes([], quantized=True) == (0, 0)
    model = {"name": "llama-3.2-1b", "id": None, "path": None}
    lora = plan_cell_memory(make_spec(model, "lora", r=16))
    dora = plan_cell_memory(make_spec(model, "dora", r=16))
    assert dora["transient_mb"] > lora["transient_mb"]
    assert dora["inference_mb"] > lora["inference_mb"]


@pytest.fixture(scope="module")
def small_llama(tmp_path_factory):
    """13.4M parameters saved in bf16 like a hub Llama: its weights, not its activations,
    dominate a batch of 8 x 32 tokens."""
    from tiny_models import build_small_llama

    return build_small_llama(tmp_path_factory.mktemp("small_llama"), dtype="bfloat16")


def test_autocast_weight_copies_are_planned(small_llama):
    """Full fine-tuning in bf16 keeps fp32 weights, and autocast makes a bf16 copy of each one a
    matmul reads, saved for backward, plus bf16 copies of each matmul's fp32 input (the
    residual stream stays fp32). Measured on the CPU under autocast: the forward held 54.1 MiB;
    the planner, tracing a pure-bf16 model, planned 28.0 (weight copies missing, the residual
    stream at half size); traced under autocast it plans 53.8."""
    from emogrid.planning.validation import validate_cpu

    spec = make_spec({"name": "small-llama", "id": None, "path": str(small_llama)}, "full", k=4)
    spec["train"].update(precision="bf16", batch_size=8, max_length=32)
    res = validate_cpu(spec, seq_len=32, steps=3)
    print("autocast validation:", json.dumps(res))
    assert res["activations_mb"] == pytest.approx(res["measured_activations_mb"], rel=0.1), res
    assert abs(res["rel_error"]) < 0.15, res


_HOST_LOAD_RSS = """
import json, sys
import peft, torch, transformers  # the runtime first: it is not the model's memory
sys.path.insert(0, sys.argv[2])
from plan_specs import make_spec
from emogrid.models.loading import load_model
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
spec = make_spec({"name": "small-llama", "id": None, "path": sys.argv[1]}, "full", k=4)
spec["train"]["precision"] = "bf16"
base = rss()
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak RSS to the current RSS
model, _tok, _family = load_model(spec, 4)
assert {p.dtype for p in model.parameters()} == {torch.float32}
print(json.dumps({"load": hwm() - base}))
"""


def test_host_memory_plan_holds_a_full_finetuning_load(small_llama):
    """A full fine-tuning cell loads its bf16 checkpoint as fp32 on the host before the Trainer
    moves it to the GPU: the mapped checkpoint (2 bytes a parameter) and the fp32 model (4) are
    resident together. Measured: 83.8 MiB for 13.4M parameters (planned 75.0; the rest is the
    loader's own objects, tokenizer included, a fixed few MiB); the host plan counted only the
    checkpoint (25.0 MiB)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux /proc/self/clear_refs to reset the peak RSS")
    from emogrid.planning.memory import HOST_RUNTIME_MB

    env = dict(os.environ, OMP_NUM_THREADS="1", MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    tests = Path(__file__).parents[1]  # tests/: plan_specs.py
    proc = subprocess.run([sys.executable, "-c", _HOST_LOAD_RSS, str(small_llama), str(tests)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    measured = json.loads(proc.stdout.strip().splitlines()[-1])["load"] / 2**20
    spec = make_spec({"name": "small-llama", "id": None, "path": str(small_llama)}, "full", k=4)
    spec["train"]["precision"] = "auto"
    plan = plan_cell_memory(spec, device="cuda")
    print(f"host load: planned {plan['host_load_mb']} MiB, measured {measured:.1f} MiB")
    assert plan["host_load_mb"] == pytest.approx(measured, rel=0.15)
    # the job's host memory holds the runtime and the larger of the load and the save copy
    assert plan["host_mem_mb"] == pytest.approx(
        HOST_RUNTIME_MB["cuda"] + max(plan["host_load_mb"], plan["host_save_mb"]), abs=0.2)
    assert plan["host_save_mb"] == pytest.approx(4 * plan["total_params"] / 2**20, rel=1e-3)  # fp32 model


def test_gpu_plan_ratio_compares_like_with_like():
    """max_memory_reserved never includes the CUDA context; the plan does. The default grid's
    bert-base QLoRA cell measured exactly as planned reported 0.469 (its tensors over tensors +
    600 MB); the ratio now divides by the plan without the context: 1.0."""
    from emogrid.models.devices import CUDA_CONTEXT_MB
    from emogrid.training.efficiency import gpu_plan_check

    spec = make_spec({"name": "bert-base-uncased", "id": None, "path": None}, "qlora", k=4, r=16)
    spec["train"].update(precision="auto", optim="adamw_8bit", batch_size=4, eval_batch_size=64, max_length=128)
    plan = plan_cell_memory(spec)
    exact = plan["reserved_peak_mb"]  # what PyTorch reserves if the plan is exact
    got = gpu_plan_check(spec, measured=exact, batch={"batch_size": 4, "grad_accum": 1})
    assert got["gpu_plan_ratio"] == pytest.approx(1.0, abs=1e-3)
    assert got["planned_gpu_mb"] == pytest.approx(exact + CUDA_CONTEXT_MB, abs=0.2) == plan["train_peak_mb"]
    # a retry's halved batch is planned as it ran: less memory planned, the same measurement is a higher ratio
    halved = gpu_plan_check(spec, measured=exact, batch={"batch_size": 2, "grad_accum": 2, "eval_batch_size": 32})
    assert halved["planned_reserved_mb"] < exact and halved["gpu_plan_ratio"] > 1.0


def test_gpu_plan_ratio_is_per_gpu_under_fsdp_and_ddp():
    """Over N GPUs each process reports its own device's peak: under FSDP the plan compared is
    the sharded one, under DDP the whole model at batch/N -- never the one-GPU plan."""
    from emogrid.training.efficiency import gpu_plan_check

    model = {"name": "llama-3.2-1b", "id": None, "path": None}
    full = make_spec(model, "full", k=4)
    full["train"].update(precision="auto", batch_size=8)
    one = plan_cell_memory(full)
    four = sharded_peak_mb(one, 4, 16)
    fsdp = gpu_plan_check(full, measured=1000.0, batch={"batch_size": 8, "grad_accum": 1}, processes=4,
                          parallel="fsdp")
    assert fsdp["planned_gpu_mb"] == pytest.approx(four) and four < one["train_peak_mb"] / 2
    lora = make_spec(model, "lora", k=4)
    lora["train"].update(precision="auto", batch_size=8)
    ddp = gpu_plan_check(lora, measured=1000.0, batch={"batch_size": 8, "grad_accum": 1}, processes=2,
                         parallel="ddp")
    per_device = json.loads(json.dumps(lora))
    per_device["train"]["batch_size"] = 4
    alone = plan_cell_memory(per_device)
    assert alone["tensor_peak_mb"] < ddp["planned_gpu_mb"] < plan_cell_memory(lora)["train_peak_mb"]


def test_token_statistics_are_per_dataset(tmp_path):
    """GoEmotions' comments are short (longest 316 tokens); another dataset is planned from its
    own prepared subsets, or at its max_length until it has some -- not from GoEmotions'."""
    from emogrid.planning.tokens import DEFAULT_TOKEN_STATS, dataset_token_stats

    config = {"datasets": {"reviews": {"kind": "table", "path": str(tmp_path), "text": "text", "label": "label"}}}
    spec = make_spec({"name": "bert-base-uncased", "id": None, "path": None}, "lora", k=4)
    spec["train"].update(max_length=512, precision="auto")
    stats = dataset_token_stats(config, tmp_path / "results")
    goemotions = dict(spec, cell={**spec["cell"], "dataset": "goemotions"})
    reviews = dict(spec, cell={**spec["cell"], "dataset": "reviews"})
    assert stats(goemotions) == DEFAULT_TOKEN_STATS
    assert plan_cell_memory(goemotions, token_stats=stats)["seq_len_peak"] == 316
    assert plan_cell_memory(reviews, token_stats=stats)["seq_len_peak"] == 512  # no subsets yet: the bound
    subset = tmp_path / "results" / "data" / "reviews2" / "k2_n8_s0"
    subset.mkdir(parents=True)
    (subset / "train.jsonl").write_text("".join(json.dumps({"text": "word " * n}) + "\n" for n in (10, 300)))
    config["datasets"]["reviews2"] = config["datasets"]["reviews"]
    prepared = dict(spec, cell={**spec["cell"], "dataset": "reviews2"})
    assert plan_cell_memory(prepared, token_stats=stats)["seq_len_peak"] == 406  # ceil(300 words x 1.345) + 2
