"""A cell over several processes (emogrid.training.distributed): DDP with 2 CPU processes (gloo) follows
the same loss curve as 1 process with the same global batch; FSDP needs CUDA."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest_train import cell_spec

from emogrid.errors import CellError
from emogrid.study.grid import config_hash
from emogrid.training import distributed, train

ROOT = Path(__file__).resolve().parents[2]


def _subset(src: Path, dst: Path, n_train: int = 32) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("val", 16), ("test", 24)):
        lines = (src / f"{split}.jsonl").read_text().splitlines(keepends=True)[:n]
        (dst / f"{split}.jsonl").write_text("".join(lines))
    (dst / "manifest.json").write_text((src / "manifest.json").read_text())
    return dst


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", ["lora", pytest.param("full", marks=pytest.mark.slow)])
def test_ddp_two_cpu_processes_match_one_process(tiny_models, tiny_subset, tmp_path, method):
    """Same global batch (8 = 1 x 8 = 2 x 4), same examples per step: same losses and grad norms,
    same predictions; metrics.json has the same shape and says it ran on 2 processes."""
    data = _subset(tiny_subset, tmp_path / "data")
    spec = cell_spec(tiny_models["llama"], method, batch_size=8, epochs=2, lr=1e-3)
    spec["config_hash"] = config_hash(spec)
    one, two = tmp_path / "one", tmp_path / "two"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="2",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]))
    assert train.run(argparse.Namespace(spec=json.dumps(spec), data=str(data), out=str(one), attempt=1,
                                        processes=1)) == 0
    proc = subprocess.run([sys.executable, "-m", "emogrid", "train", "--spec", json.dumps(spec), "--data", str(data),
                           "--out", str(two), "--processes", "2"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:] + (two / "run.log").read_text()[-3000:]
    assert "launching 2 processes" in proc.stderr

    steps1 = [r for r in _log(one) if "loss" in r]
    steps2 = [r for r in _log(two) if "loss" in r]
    assert [r["step"] for r in steps1] == [r["step"] for r in steps2] and len(steps1) >= 8
    for a, b in zip(steps1, steps2):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3, abs=1e-4), (a, b)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-3, abs=1e-4), (a, b)
    m1 = json.loads((one / "metrics.json").read_text())
    m2 = json.loads((two / "metrics.json").read_text())
    assert set(m1) == set(m2) and set(m1["efficiency"]) == set(m2["efficiency"])
    assert set(m1["test"]) == set(m2["test"])
    assert m2["test"]["n"] == m1["test"]["n"] == 24  # gathered once, without padding duplicates
    assert m2["test"]["accuracy"] == pytest.approx(m1["test"]["accuracy"])
    assert (m1["efficiency"]["processes"], m2["efficiency"]["processes"]) == (1, 2)
    assert m2["efficiency"]["parallel"] == "ddp" and m2["efficiency"]["effective_batch_size"] == 8
    preds = [json.loads(line) for line in (two / "predictions.jsonl").read_text().splitlines()]
    val_rows = len((data / "val.jsonl").read_text().splitlines())
    assert m2["val"]["n"] == m1["val"]["n"] == val_rows and len(preds) == val_rows + 24
    assert not (two / "failure.json").exists() and not (two / ".checkpoint").exists()


def test_batch_is_split_evenly_or_the_cell_says_why():
    assert distributed.per_device_batch(8, 2) == 4 and distributed.per_device_batch(6, 1) == 6
    with pytest.raises(CellError, match="multiple of 4"):
        distributed.per_device_batch(6, 4)


def test_parallel_mode_by_method_and_device():
    full, lora = {"method": {"peft": "full"}}, {"method": {"peft": "lora"}}
    assert distributed.parallel_arguments(full, True, 2)["fsdp"].startswith("full_shard")
    assert "fsdp" not in distributed.parallel_arguments(lora, True, 2)
    assert distributed.parallel_arguments(full, False, 2) == {"ddp_backend": "gloo"}  # CPU: DDP
    assert distributed.parallel_arguments(full, True, 1) == {}
    assert distributed.parallel_mode(full, True, 2) == "fsdp" and distributed.parallel_mode(lora, True, 2) == "ddp"


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 2,
    reason="FSDP (full fine-tuning over several GPUs) needs at least 2 CUDA devices; "
    "this machine has none, so only its arguments are tested (test_parallel_mode_by_method_and_device)",
)
def test_fsdp_full_finetuning_two_gpus(tiny_models, tiny_subset, tmp_path):
    data = _subset(tiny_subset, tmp_path / "data")
    spec = cell_spec(tiny_models["llama"], "full", batch_size=8, epochs=1)
    proc = subprocess.run([sys.executable, "-m", "emogrid", "train", "--spec", json.dumps(spec), "--data", str(data),
                           "--out", str(tmp_path / "run"), "--processes", "2"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "run/metrics.json").read_text())["efficiency"]["parallel"] == "fsdp"
