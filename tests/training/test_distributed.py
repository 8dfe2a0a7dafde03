"""A cell over several processes (emogrid.training.distributed): DDP with 2 CPU processes (gloo) follows
the same loss curve as 1 process with the same global batch; the ranks agree on a SIGTERM stop, a
failure on any rank is the cell's failure.json and its OOM retry halves each process's batch; FSDP
itself needs CUDA (its arguments and rank-0-only loading are checked here).

Faults are injected into one rank by tests/training/rank_hooks/sitecustomize.py (a hook at a known step,
never a timing)."""

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
RANK_HOOKS = Path(__file__).resolve().parent / "rank_hooks"


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
    env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="2", EMOGRID_CPU_PROCESSES="1",  # no GPU: CPU processes
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]))
    assert train.run(argparse.Namespace(spec=json.dumps(spec), data=str(data), out=str(one), attempt=1,
                                        processes=1)) == 0
    # another config's checkpoint: rank 0 alone discards it, rank 1 waits and finds none
    stale = two / ".checkpoint" / "checkpoint-3"
    stale.mkdir(parents=True)
    (stale / "trainer_state.json").write_text("{}")
    (two / ".checkpoint" / "config_hash.json").write_text(json.dumps({"config_hash": "another config"}))
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
    assert m2["efficiency"]["resumed_from_step"] == 0
    preds = [json.loads(line) for line in (two / "predictions.jsonl").read_text().splitlines()]
    val_rows = len((data / "val.jsonl").read_text().splitlines())
    assert m2["val"]["n"] == m1["val"]["n"] == val_rows and len(preds) == val_rows + 24
    assert not (two / "failure.json").exists() and not (two / ".checkpoint").exists()


def test_a_cell_over_gpus_where_none_is_visible_fails_at_once(tiny_models, tmp_path, monkeypatch):
    """`--processes 3` on a machine without a GPU: a failure.json that says so, not retried, and
    no torchrun -- it used to launch 3 CPU processes, each of which then failed (or trained on
    the CPU). CPU processes only when asked (EMOGRID_CPU_PROCESSES=1, the DDP test above)."""
    spec = cell_spec(tiny_models["llama"], "lora", batch_size=6)
    spec["config_hash"] = config_hash(spec)
    launched = []
    monkeypatch.setattr(distributed, "launch", lambda *a, **k: launched.append(a) or (0, False))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv(distributed.CPU_PROCESSES_VAR, raising=False)
    out = tmp_path / "run"
    args = argparse.Namespace(spec=json.dumps(spec), data=str(tmp_path), out=str(out), attempt=1, processes=3)
    assert train.run(args) == 2 and launched == []
    failure = json.loads((out / "failure.json").read_text())
    assert failure["error"]["retryable"] is False and failure["cell_id"] == spec["cell_id"]
    assert "runs over 3 GPUs (resources.train.gpu: 3) but no GPUs are visible" in failure["error"]["message"]
    assert distributed.CPU_PROCESSES_VAR in failure["error"]["hint"]
    monkeypatch.setenv(distributed.CPU_PROCESSES_VAR, "1")  # asked for: 3 CPU processes
    assert train.run(args) == 0 and len(launched) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # 2 GPUs for 3 processes: not enough
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert "but 2 GPUs are visible" in distributed.device_problem(3, {"CUDA_VISIBLE_DEVICES": "0,1"})
    assert distributed.device_problem(2, {}) is None


def test_batch_is_split_evenly_or_the_cell_says_why():
    assert distributed.per_device_batch(8, 2) == 4 and distributed.per_device_batch(6, 1) == 6
    with pytest.raises(CellError, match="multiple of 4"):
        distributed.per_device_batch(6, 4)


def test_parallel_mode_by_method_and_device():
    """DDP looks for no unused parameters on the CPU (gloo, these tests) exactly as on CUDA (nccl):
    the CPU DDP test checks the setting that CUDA runs with (it used transformers' default, True)."""
    full, lora = {"method": {"peft": "full"}}, {"method": {"peft": "lora"}}
    assert distributed.parallel_arguments(full, True, 2)["fsdp"] is True
    assert "fsdp" not in distributed.parallel_arguments(lora, True, 2)
    cpu, gpu = distributed.parallel_arguments(full, False, 2), distributed.parallel_arguments(lora, True, 2)
    assert cpu == {"ddp_backend": "gloo", "ddp_find_unused_parameters": False}  # CPU: DDP, also for full
    assert gpu == {"ddp_backend": "nccl", "ddp_find_unused_parameters": False}
    assert distributed.parallel_arguments(full, True, 1) == {}
    assert distributed.parallel_mode(full, True, 2) == "fsdp" and distributed.parallel_mode(lora, True, 2) == "ddp"


# ---------------------------------------------------------------- FSDP (arguments and loading; sharding needs CUDA)


def test_fsdp_is_fsdp2_loading_on_rank_0_and_reducing_gradients_in_fp32(tiny_models, tmp_path, monkeypatch):
    """What accelerate receives for a full fine-tuning cell over 2 GPUs: FSDP2 (transformers 5's
    default, where FSDP1's use_orig_params / sync_module_states are ignored), weights read by
    rank 0 only, and a mixed-precision policy that computes in bf16 but all-reduces gradients
    in fp32 (accelerate's default policy for bf16 reduces in bf16, unlike the single-GPU autocast
    path). accelerate's own step is replayed: it fills in its default only where no policy is set.
    Not testable without 2 GPUs: the sharded run itself and the NCCL reduction it does."""
    import transformers.training_args
    from accelerate.utils import FullyShardedDataParallelPlugin

    from emogrid.training.arguments import training_arguments

    # the arguments of a bf16 GPU, built on this CPU machine
    monkeypatch.setattr(transformers.training_args, "is_torch_bf16_gpu_available", lambda: True)
    spec = cell_spec(tiny_models["llama"], "full", batch_size=8)
    args = training_arguments(spec, tmp_path / "ckpt", {"batch_size": 8, "grad_accum": 1, "eval_batch_size": 8},
                              4, precision="bf16", cuda=True, processes=2)
    plugin_args = args.fsdp_plugin_args
    assert plugin_args["fsdp_version"] == 2 and plugin_args["cpu_ram_efficient_loading"] is True
    assert plugin_args["state_dict_type"] == "FULL_STATE_DICT" and plugin_args["reshard_after_forward"] is True
    plugin = FullyShardedDataParallelPlugin(**plugin_args)
    plugin.set_mixed_precision("bf16")  # what AcceleratorState does with mixed_precision="bf16"
    policy = plugin.mixed_precision_policy
    assert policy.param_dtype == torch.bfloat16 and policy.reduce_dtype == torch.float32
    assert distributed.fsdp_mixed_precision("fp32") is None  # fp32 cells: nothing to cast


def test_fsdp_ranks_other_than_0_build_the_model_on_meta(tiny_models):
    """Rank 0 reads the weights; the other FSDP ranks build the same model on the meta device
    (no host copy: accelerate's cpu_ram_efficient_loading broadcasts rank 0's weights when it
    shards), with real non-persistent buffers (rotary frequencies are never broadcast)."""
    from emogrid.models.loading import load_model

    full, lora = cell_spec(tiny_models["llama"], "full"), cell_spec(tiny_models["llama"], "lora")
    rank1 = {"RANK": "1", "WORLD_SIZE": "2"}
    assert distributed.loads_on_meta(full, True, rank1)
    assert not distributed.loads_on_meta(full, True, {"RANK": "0", "WORLD_SIZE": "2"})
    assert not distributed.loads_on_meta(lora, True, rank1) and not distributed.loads_on_meta(full, False, rank1)
    loaded, _, _ = load_model(full, 3)
    meta, _, _ = load_model(full, 3, on_meta=True)
    shapes = {n: (p.shape, p.dtype) for n, p in loaded.named_parameters()}
    assert {n: (p.shape, p.dtype) for n, p in meta.named_parameters()} == shapes
    assert all(p.is_meta for p in meta.parameters())
    buffers = dict(loaded.named_buffers())
    assert buffers and all(not b.is_meta and torch.equal(b, buffers[n]) for n, b in meta.named_buffers())


# ---------------------------------------------------------------- the ranks agree: stop, failure, retry, checkpoints


def _launch(spec: dict, data: Path, out: Path, attempt: int = 1, **hook) -> subprocess.CompletedProcess:
    """`emogrid train --processes 2` on the CPU (gloo); `hook`: EMOGRID_HOOK* variables for
    tests/training/rank_hooks/sitecustomize.py."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="2", EMOGRID_CPU_PROCESSES="1", **hook,
               PYTHONPATH=os.pathsep.join([str(RANK_HOOKS), str(ROOT / "src"), env.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "emogrid", "train", "--spec", json.dumps(spec), "--data", str(data),
                           "--out", str(out), "--processes", "2", "--attempt", str(attempt)],
                          env=env, capture_output=True, text=True, timeout=600)


def test_oom_on_rank_1_is_the_cells_failure_and_the_retry_halves_each_process_batch(tiny_models, tiny_subset,
                                                                                     tmp_path):
    """Rank 1 runs out of memory while rank 0 only sees its peer vanish: failure.json says OOM
    (only rank 0 wrote one before, with rank 0's own error, so the retry repeated the batch).
    The retry halves each process's share: 6 = 2 x 3 becomes 2 = 2 x 1 with 3 accumulation steps
    (halving the global 6 gave 3, which "cannot be split evenly over 2 processes")."""
    data = _subset(tiny_subset, tmp_path / "data", n_train=24)
    spec = cell_spec(tiny_models["llama"], "lora", batch_size=6, epochs=1)
    spec["config_hash"] = config_hash(spec)
    out = tmp_path / "run"
    first = _launch(spec, data, out, EMOGRID_HOOK="oom", EMOGRID_HOOK_RANK="1")
    assert first.returncode == 1, first.stderr[-3000:]
    failure = json.loads((out / "failure.json").read_text())
    assert failure["error"]["type"] == "OutOfMemoryError" and failure["rank"] == 1, failure
    assert "micro-batch 6 (3 per process over 2 processes)" in failure["error"]["message"]
    assert failure["ranks"]["1"] == "OutOfMemoryError" and (failure["batch_size"], failure["grad_accum"]) == (6, 1)
    assert not (out / ".ranks").exists()

    second = _launch(spec, data, out, attempt=2)
    assert second.returncode == 0, second.stderr[-3000:] + (out / "run.log").read_text()[-3000:]
    eff = json.loads((out / "metrics.json").read_text())["efficiency"]
    assert (eff["batch_size"], eff["grad_accum"], eff["effective_batch_size"], eff["processes"]) == (2, 3, 6, 2)
    assert not (out / "failure.json").exists()


def test_sigterm_on_one_rank_stops_every_rank_at_the_same_step(tiny_models, tiny_subset, tmp_path):
    """SIGTERM reaches rank 1 at the end of step 2 (a preemption that hits the ranks at different
    moments): the ranks all-reduce the stop flag, so both save at step 2 and stop; the launcher
    exits 143 with no failure, and the next run resumes both ranks from step 2. (With each rank
    acting on its own flag, rank 1 stopped alone and rank 0 went on all-reducing gradients.)"""
    data = _subset(tiny_subset, tmp_path / "data", n_train=32)
    spec = cell_spec(tiny_models["llama"], "lora", batch_size=4, epochs=1)
    spec["config_hash"] = config_hash(spec)
    out = tmp_path / "run"
    first = _launch(spec, data, out, EMOGRID_HOOK="sigterm", EMOGRID_HOOK_RANK="1", EMOGRID_HOOK_STEP="2")
    run_log = (out / "run.log").read_text()
    assert first.returncode == 143, first.stderr[-3000:] + run_log[-3000:]
    saved = [line for line in run_log.splitlines() if "SIGTERM: checkpoint saved at step" in line]
    assert len(saved) == 2 and all(line.endswith("step 2; the next run resumes from it") for line in saved), saved
    assert any("[rank 1]" in line for line in saved)
    checkpoints = sorted(p.name for p in (out / ".checkpoint").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-2"]
    assert json.loads((out / ".checkpoint/checkpoint-2/trainer_state.json").read_text())["global_step"] == 2
    assert not (out / "failure.json").exists() and not (out / "metrics.json").exists()

    second = _launch(spec, data, out)
    assert second.returncode == 0, second.stderr[-3000:]
    eff = json.loads((out / "metrics.json").read_text())["efficiency"]
    assert eff["resumed_from_step"] == 2 and eff["optimizer_steps"] == 8


def test_a_retry_halves_each_process_share_and_keeps_the_effective_batch():
    from emogrid.training.failures import smaller_micro_batch

    assert smaller_micro_batch(8, 1, 2) == (4, 2)  # 4 per process -> 2
    assert smaller_micro_batch(6, 1, 2) == (2, 3)  # 3 per process -> 1, the effective batch stays 6
    assert smaller_micro_batch(12, 2, 4) == (4, 6)
    assert smaller_micro_batch(5, 1, 1) == (1, 5)  # odd: 5 x 1 = 1 x 5, never 2 x 2
    assert smaller_micro_batch(2, 4, 2) is None  # one example per process: nothing left to halve


def test_plan_attempt_halves_per_process(tiny_models, tmp_path):
    from emogrid.errors import EmogridError
    from emogrid.training.failures import plan_attempt

    spec = cell_spec(tiny_models["llama"], "lora", batch_size=6, grad_accum=1)
    spec["config_hash"] = config_hash(spec)
    oom = {"type": "OutOfMemoryError", "retryable": True, "phase": "train", "message": "oom"}
    (tmp_path / "failure.json").write_text(json.dumps({"status": "failed", "batch_size": 6, "grad_accum": 1,
                                                       "error": oom,
                                                       "provenance": {"config_hash": spec["config_hash"]}}))
    assert plan_attempt(spec, tmp_path, 2, processes=2) == {"batch_size": 2, "grad_accum": 3, "eval_batch_size": 256}
    assert distributed.per_device_batch(2, 2) == 1
    (tmp_path / "failure.json").write_text(json.dumps({"status": "failed", "batch_size": 2, "grad_accum": 3,
                                                       "error": oom,
                                                       "provenance": {"config_hash": spec["config_hash"]}}))
    with pytest.raises(EmogridError, match="not retrying"):
        plan_attempt(spec, tmp_path, 3, processes=2)


def test_the_ranks_outcomes_merge_into_one_failure(tmp_path):
    """The launcher's merge: rank 1's OOM beats rank 0's lost-peer error; preemption alone is no failure."""
    from emogrid.training.failures import RANKS_DIR, merge_rank_outcomes

    ranks = tmp_path / RANKS_DIR
    ranks.mkdir()

    def record(kind, retryable=True):
        return {"status": "failed", "cell_id": "c", "error": {"type": kind, "message": "m", "retryable": retryable}}

    (ranks / "rank0.json").write_text(json.dumps({"outcome": "failed", "rank": 0, "record": record("RuntimeError")}))
    (ranks / "rank1.json").write_text(json.dumps({"outcome": "failed", "rank": 1,
                                                  "record": record("OutOfMemoryError")}))
    merged = merge_rank_outcomes(tmp_path)
    assert merged["failure"]["rank"] == 1 and merged["failure"]["error"]["type"] == "OutOfMemoryError"
    assert merged["failure"]["ranks"] == {"0": "RuntimeError", "1": "OutOfMemoryError"}
    for r in (0, 1):
        (ranks / f"rank{r}.json").write_text(json.dumps({"outcome": "preempted", "rank": r}))
    assert merge_rank_outcomes(tmp_path) == {"failure": None, "preempted": True, "ranks": {0: "preempted",
                                                                                           1: "preempted"}}


def test_only_rank_0_discards_another_configs_checkpoints(tmp_path, monkeypatch):
    """Under torchrun every rank looked for the checkpoint and each deleted a stale folder, racing
    rank 0, which writes the new config's stamp: rank 1 could delete it, or resume from another
    checkpoint than rank 0. Now rank 1 only reads (after rank 0 is done, behind a barrier)."""
    from emogrid.training.fit import find_checkpoint

    ckpt = tmp_path / ".checkpoint"
    (ckpt / "checkpoint-3").mkdir(parents=True)
    (ckpt / "checkpoint-3" / "trainer_state.json").write_text("{}")
    (ckpt / "config_hash.json").write_text(json.dumps({"config_hash": "another config"}))
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert find_checkpoint(ckpt, "this config") is None
    assert (ckpt / "checkpoint-3" / "trainer_state.json").is_file()  # rank 1 deleted nothing
    monkeypatch.setenv("RANK", "0")
    assert find_checkpoint(ckpt, "this config") is None and not ckpt.exists()
    (ckpt / "checkpoint-5").mkdir(parents=True)
    (ckpt / "checkpoint-5" / "trainer_state.json").write_text("{}")
    (ckpt / "config_hash.json").write_text(json.dumps({"config_hash": "this config"}))
    monkeypatch.setenv("RANK", "1")
    assert find_checkpoint(ckpt, "this config") == ckpt / "checkpoint-5"


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
