"""Correctness fixes that the first GPU user would hit (issue 15), tested where visible on CPU.

Gradient accumulation normalisation, LoRA+ weight decay, device pinning, OOM classification,
precision `auto` on pre-Ampere GPUs, int8 warnings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from conftest_train import cell_spec

from emogrid.study.grid import config_hash
from emogrid.training import train
from emogrid.training.arguments import precision_of
from emogrid.training.failures import describe_failure, plan_attempt
from emogrid.training.trainer import CellTrainer


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here: one torch thread (conftest_train.one_torch_thread)."""


def hashed(spec: dict) -> dict:
    spec["config_hash"] = config_hash(spec)
    return spec


def _sixteen_rows(src: Path, dst: Path) -> Path:
    """A subset with exactly 16 training rows (one optimizer step at effective batch 16)."""
    dst.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 16), ("val", 8), ("test", 8)):
        lines = (src / f"{split}.jsonl").read_text().splitlines(keepends=True)[:n]
        (dst / f"{split}.jsonl").write_text("".join(lines))
    (dst / "manifest.json").write_text((src / "manifest.json").read_text())
    return dst


def _first_step(spec: dict, data: Path, out: Path) -> dict:
    rc = train.run(argparse.Namespace(spec=json.dumps(hashed(spec)), data=str(data), out=str(out), attempt=1))
    assert rc == 0, (out / "run.log").read_text()
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    step1 = [r for r in rows if r.get("step") == 1 and "loss" in r]
    assert step1, rows
    return step1[0]


@pytest.mark.parametrize("method", ["full", "lora"])
def test_grad_accumulation_gives_the_same_loss_and_grad_norm(tiny_models, tiny_subset, tmp_path, method):
    """16 rows as 16x1, 8x2 and 4x4: one optimizer step each, same loss and same gradient.

    The heads accept **kwargs, so the Trainer assumed they normalise by num_items_in_batch and
    skipped loss / grad_accum: 8x2 gave twice the loss and grad norm of 16x1, 4x4 four times."""
    data = _sixteen_rows(tiny_subset, tmp_path / "data")
    seen = {}
    for bs, ga in ((16, 1), (8, 2), (4, 4)):
        spec = cell_spec(tiny_models["llama"], method, batch_size=bs, grad_accum=ga, epochs=1,
                         max_grad_norm=1000.0)
        seen[(bs, ga)] = _first_step(spec, data, tmp_path / f"run{bs}x{ga}")
    ref = seen[(16, 1)]
    for key, row in seen.items():
        assert row["loss"] == pytest.approx(ref["loss"], rel=1e-3), (key, seen)
        assert row["grad_norm"] == pytest.approx(ref["grad_norm"], rel=1e-3), (key, seen)


def _trainer_for(model, tmp_path, ratio, optim_8bit=False):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path / "ckpt"), learning_rate=1e-3, weight_decay=0.01,
                             use_cpu=True, report_to="none", optim="adamw_bnb_8bit" if optim_8bit else "adamw_torch")
    return CellTrainer(model=model, args=args, loraplus_ratio=ratio)


@pytest.mark.parametrize("use_dora", [False, True], ids=["loraplus", "loraplus-dora"])
def test_loraplus_keeps_weight_decay_and_speeds_up_only_b(tiny_models, tmp_path, use_dora):
    """peft's create_loraplus_optimizer set weight decay 0 on every group and gave 1-D tensors
    (head bias, DoRA magnitudes) the B learning rate."""
    from emogrid.models.adapters import apply_method
    from emogrid.models.loading import load_model

    spec = cell_spec(tiny_models["llama"], "loraplus")
    spec["method"]["use_dora"] = use_dora
    model, _, family = load_model(spec, 3)
    model = apply_method(model, spec, family)
    trainer = _trainer_for(model, tmp_path, ratio=16.0)
    optimizer = trainer.create_optimizer()
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    names = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert len(group_of) == len(names)  # every trainable tensor is optimised, once
    seen = set()
    for name, p in names.items():
        g = group_of[id(p)]
        if ".lora_B." in name:
            assert g["lr"] == pytest.approx(16e-3) and g["weight_decay"] == 0.01, name
            seen.add("B")
        else:
            assert g["lr"] == pytest.approx(1e-3), name
            if name.endswith("bias"):
                assert g["weight_decay"] == 0.0, name
                seen.add("bias")
            else:
                assert g["weight_decay"] == 0.01, name
                seen.add("A" if ".lora_A." in name else "other")
        if "magnitude" in name:
            seen.add("magnitude")
    assert {"A", "B", "other"} <= seen  # A matrices and the head weight
    assert ("magnitude" in seen) == use_dora


# ---------------------------------------------------------------- device pinning


@pytest.mark.parametrize("env, detected, expected", [
    ({"CUDA_VISIBLE_DEVICES": "2,5"}, 0, "2"),            # whole-node allocation / by hand
    ({}, 4, "0"),                                         # unset on a 4-GPU machine
    ({"CUDA_VISIBLE_DEVICES": "GPU-aaa,GPU-bbb"}, 0, "GPU-aaa"),
    ({"CUDA_VISIBLE_DEVICES": "3"}, 8, "3"),              # already one: unchanged
    ({"CUDA_VISIBLE_DEVICES": ""}, 8, ""),                # none: stays none (CPU)
    ({}, 1, None),                                        # one GPU: nothing to do
    ({"CUDA_VISIBLE_DEVICES": "0,1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}, 2, "0,1"),  # torchrun rank
])
def test_a_single_process_cell_is_pinned_to_one_gpu(env, detected, expected):
    from emogrid.models.devices import pin_visible_devices

    env = dict(env)
    before = dict(env)
    message = pin_visible_devices(env, detect=lambda: detected)
    assert env.get("CUDA_VISIBLE_DEVICES") == expected
    assert (message is not None) == (env != before)
    if message:
        assert "pinned to GPU" in message and "DataParallel" in message


def test_trainer_never_counts_more_than_one_gpu_in_one_process():
    from types import SimpleNamespace

    from emogrid.models.devices import single_process_n_gpu

    args = SimpleNamespace(_n_gpu=4, world_size=1)
    single_process_n_gpu(args)
    assert args._n_gpu == 1
    ddp_rank = SimpleNamespace(_n_gpu=1, world_size=2)
    single_process_n_gpu(ddp_rank)
    assert ddp_rank._n_gpu == 1


def test_train_cli_pins_before_cuda_starts(tmp_path, monkeypatch):
    """`emogrid train` by hand with two GPUs visible: CUDA_VISIBLE_DEVICES narrowed, said in run.log."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    rc = train.run(argparse.Namespace(spec="{}", data=str(tmp_path / "none"), out=str(tmp_path / "run"), attempt=1))
    assert rc == 2  # the empty spec fails, after pinning
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    assert "pinned to GPU 0" in (tmp_path / "run" / "run.log").read_text()


# ---------------------------------------------------------------- out of memory


@pytest.mark.parametrize("err, oom", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"), True),
    (RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"), True),
    (RuntimeError("CUDA error: an illegal memory access was encountered"), False),
    (ValueError("out of memory"), False),
])
def test_every_cuda_allocation_failure_is_an_oom(err, oom):
    info = describe_failure(err, {"batch_size": 8})
    assert (info["type"] == "OutOfMemoryError") == oom
    if oom:
        assert info["retryable"] and info["phase"] == "train" and "micro-batch 8" in info["message"]


def _failure(out: Path, spec: dict, **record) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "failure.json").write_text(
        json.dumps({"status": "failed", "provenance": {"config_hash": spec["config_hash"]}, **record})
    )


def test_halved_attempt_that_fails_otherwise_keeps_the_halved_batch(tiny_models, tmp_path):
    spec = hashed(cell_spec(tiny_models["bert"], "lora", batch_size=8, grad_accum=1))
    _failure(tmp_path, spec, batch_size=4, grad_accum=2, eval_batch_size=256,
             error={"type": "RuntimeError", "retryable": True, "message": "NCCL timeout"})
    assert plan_attempt(spec, tmp_path, 3) == {"batch_size": 4, "grad_accum": 2, "eval_batch_size": 256}
    # and a further OOM halves from there
    _failure(tmp_path, spec, batch_size=4, grad_accum=2, eval_batch_size=256,
             error={"type": "OutOfMemoryError", "retryable": True, "phase": "train", "message": "oom"})
    assert plan_attempt(spec, tmp_path, 4) == {"batch_size": 2, "grad_accum": 4, "eval_batch_size": 256}


def test_oom_in_evaluation_halves_the_evaluation_batch_only(tiny_models, tmp_path, monkeypatch):
    from transformers import Trainer, TrainingArguments

    def boom(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(Trainer, "evaluate", boom)
    trainer = CellTrainer(model=torch.nn.Linear(2, 2),
                          args=TrainingArguments(output_dir=str(tmp_path / "c"), use_cpu=True, report_to="none"))
    with pytest.raises(torch.OutOfMemoryError) as caught:
        trainer.evaluate()
    info = describe_failure(caught.value, {"batch_size": 8, "grad_accum": 1, "eval_batch_size": 256})
    assert info["phase"] == "eval" and "evaluation" in info["message"]

    spec = hashed(cell_spec(tiny_models["bert"], "lora", batch_size=8, grad_accum=1))
    _failure(tmp_path, spec, batch_size=8, grad_accum=1, eval_batch_size=256, error=info)
    assert plan_attempt(spec, tmp_path, 2) == {"batch_size": 8, "grad_accum": 1, "eval_batch_size": 128}


# ---------------------------------------------------------------- precision auto


@pytest.mark.parametrize("capability, emulated, expected", [
    ((7, 0), True, "fp32"),   # V100: bf16 only emulated
    ((7, 5), True, "fp32"),   # T4
    ((8, 0), True, "bf16"),   # A100
    ((9, 0), True, "bf16"),   # H100/H200
])
def test_precision_auto_needs_native_bf16(monkeypatch, capability, emulated, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: capability[0] >= 8 or (emulated and including_emulation))
    monkeypatch.setattr(torch.version, "hip", None)
    from emogrid.models.loading import base_weights_dtype, compute_dtype

    assert precision_of({"train": {"precision": "auto"}}) == expected
    assert (compute_dtype({"compute_dtype": "auto"}) == torch.bfloat16) == (expected == "bf16")
    assert base_weights_dtype({"train": {"precision": "auto"}, "method": {"peft": "lora"}}) == expected


# ---------------------------------------------------------------- int8


def test_int8_cast_warning_is_logged_once(caplog, monkeypatch):
    import logging

    from emogrid.models.devices import quiet_int8_casts

    logger = logging.getLogger("bitsandbytes.autograd._functions")
    # a fresh filter: an int8 cell trained earlier in this process has spent the first line
    monkeypatch.setattr(logger, "filters", [])
    quiet_int8_casts()
    quiet_int8_casts()  # idempotent: one filter
    with caplog.at_level(logging.WARNING, logger=logger.name):
        for _ in range(50):  # what MatMul8bitLt.forward logs for each layer, each step
            logger.warning("MatMul8bitLt: inputs will be cast from %s to float16 during quantization", torch.bfloat16)
        logger.warning("something else")
    casts = [r for r in caplog.records if r.getMessage().startswith("MatMul8bitLt")]
    assert len(casts) == 1 and any(r.getMessage() == "something else" for r in caplog.records)
