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
from emogrid import train
from emogrid.grid import config_hash


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
                             use_cpu=True, report_to="none")
    trainer = train.CellTrainer(model=model, args=args)
    trainer.loraplus_ratio = ratio
    trainer.optim_8bit = optim_8bit
    return trainer


@pytest.mark.parametrize("use_dora", [False, True], ids=["loraplus", "loraplus-dora"])
def test_loraplus_keeps_weight_decay_and_speeds_up_only_b(tiny_models, tmp_path, use_dora):
    """peft's create_loraplus_optimizer set weight decay 0 on every group and gave 1-D tensors
    (head bias, DoRA magnitudes) the B learning rate."""
    from emogrid.adapters import apply_method
    from emogrid.models import load_model

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
