"""What a cell cost: metrics.json's `efficiency` (parameters, seconds, throughput, steps,
batches, peak memory), on CUDA the planner's GPU estimate next to the measured peak, and for a
cell packed beside others on one GPU its share and the cells it shared the GPU with (their
load is in its timings).

Seconds are split so that methods compare on training alone: `train_seconds` is the training
steps (the loop minus its evaluations and checkpoint saves; throughput is per these seconds),
`eval_seconds` every evaluation (the validations in the loop and the final val/test
predictions), `checkpoint_seconds` the checkpoint saves; `train_loop_seconds` is the loop whole.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

from emogrid.study.spec_sections import TrainRecipe

log = logging.getLogger("emogrid.training.train")  # run.log (emogrid.training.train sets up its handler)


def efficiency(spec: dict, cell, fitted, evaluated, batch: dict) -> dict:
    """metrics.json's `efficiency` of a cell (build.BuiltCell, fit.Fitted, evaluate.Evaluated)."""
    import torch

    from emogrid.training import distributed

    state = fitted.trainer.state
    train_seconds = fitted.train_seconds
    n_train = len(cell.sets["train"])
    epochs_done = fitted.steps_this_run / max(cell.steps_per_epoch, 1)
    tokens_per_epoch = sum(len(x["input_ids"]) for x in cell.sets["train"])
    restored = TrainRecipe.from_spec(spec).restore_best  # else the last step's weights were tested
    return {
        "trainable_params": cell.trainable, "total_params": cell.total,
        "trainable_percent": round(100.0 * cell.trainable / cell.total, 4),
        "train_seconds": round(train_seconds, 3),
        "eval_seconds": round(fitted.eval_seconds + evaluated.eval_seconds, 3),
        "checkpoint_seconds": round(fitted.checkpoint_seconds, 3),
        "train_loop_seconds": round(fitted.loop_seconds, 3),
        **peak_memory(),
        **gpu_plan_check(spec, batch=batch, processes=distributed.world_size(),
                         parallel=distributed.parallel_mode(spec, torch.cuda.is_available(), distributed.world_size()),
                         token_stats=seen_token_stats(cell.sets)),
        "train_samples_per_second": round(n_train * epochs_done / train_seconds, 3) if train_seconds else 0.0,
        "train_tokens_per_second": round(tokens_per_epoch * epochs_done / train_seconds, 3) if train_seconds else 0.0,
        "epochs_run": int(math.ceil(round(state.epoch or 0, 6))),
        # the step whose weights were tested: the best evaluation's, or the last (restore_best false)
        "best_step": int((state.best_global_step if restored else None) or state.global_step),
        "optimizer_steps": int(state.global_step),
        "optimizer_steps_this_run": int(fitted.steps_this_run),
        "resumed_from_step": fitted.resumed_from_step,
        "batch_size": batch["batch_size"], "grad_accum": batch["grad_accum"],
        "effective_batch_size": batch["batch_size"] * batch["grad_accum"],
        "processes": distributed.world_size(),
        "parallel": distributed.parallel_mode(spec, torch.cuda.is_available(), distributed.world_size()),
        **gpu_share(),
    }


def gpu_share(environ=None) -> dict:
    """A packed cell's share of its GPU (`gpu_share`, a fraction; `gpu_share_mb`, its planned
    MiB with the margin, when packed by memory) and the cells that shared the GPU with it at any
    time (`co_tenants`, their run folders; `gpu_co_tenants`, how many), from its gpu-slot ledger
    record (EMOGRID_GPU_SHARE_FILE). {} for a cell that had its device to itself."""
    environ = os.environ if environ is None else environ
    path = environ.get("EMOGRID_GPU_SHARE_FILE", "").strip()
    if not path:
        return {}
    from emogrid.scheduling.gpu_ids import lock_key
    from emogrid.scheduling.gpu_ledger import Ledger
    from emogrid.scheduling.gpu_locks import open_slot_file

    try:
        record = Ledger(Path(path).parent, lock_key, open_slot_file).read_share(Path(path))
    except OSError as err:  # a lost ledger must not fail a trained cell
        log.warning("could not read this cell's GPU share record %s: %s", path, err)
        return {}
    names = sorted({str(n) for n in record.get("co_tenants") or [] if n})
    out = {"gpu_share": round(float(record.get("fraction") or 0.0), 4),
           "gpu_co_tenants": len(names) + int(record.get("co_tenants_more") or 0), "co_tenants": names}
    if record.get("mb"):
        out["gpu_share_mb"] = round(float(record["mb"]), 1)
    return out


def peak_memory() -> dict:
    import torch

    if torch.cuda.is_available():
        return {"peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1), "peak_memory_kind": "cuda"}
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"peak_memory_mb": round(kb / 1024, 1), "peak_memory_kind": "rss"}


def seen_token_stats(sets: dict) -> dict:
    """The longest example the cell padded a batch to, over all its splits: the plan checked
    against the measurement uses the sequence length that ran, not a dataset's statistics."""
    longest = max((len(x["input_ids"]) for rows in sets.values() for x in rows), default=1)
    return {"source": "this cell's subset", "mean": longest, "p95": longest, "p99": longest, "max": longest}


def gpu_plan_check(spec: dict, measured=None, *, batch: dict | None = None, processes: int = 1,
                   parallel: str = "single", token_stats: dict | None = None) -> dict:
    """On CUDA: this GPU's planned peak next to its measured one, so the report shows how good
    the estimate that packs cells onto GPUs was. {} on CPU.

    Like with like: the measurement is torch.cuda.max_memory_reserved, what PyTorch's caching
    allocator took, which never includes the CUDA context; so the ratio divides it by the plan
    without the context (`reserved_peak_mb`), and a perfectly exact plan gives 1.0.
    `planned_gpu_mb` is the whole plan (context included, what packing reserves). The plan is
    of this attempt's batches, per GPU: over DDP processes each trains batch/N; under FSDP each
    holds its shard (emogrid.planning.memory.per_gpu_plan).

    `measured`: MiB reserved (tests); default torch.cuda.max_memory_reserved when CUDA is used."""
    if measured is None:
        import torch

        if not torch.cuda.is_available():
            return {}
        measured = torch.cuda.max_memory_reserved() / 2**20
    try:
        from emogrid.planning.memory import per_gpu_plan

        plan = per_gpu_plan(spec, batch=batch, processes=processes, parallel=parallel, token_stats=token_stats)
    except Exception as err:  # noqa: BLE001 - a planning gap must not fail a trained cell
        log.warning("could not plan this cell's GPU memory for the plan-vs-measured check: %s", err)
        return {"peak_memory_reserved_mb": round(measured, 1)}
    reserved = float(plan["reserved_peak_mb"])
    return {"peak_memory_reserved_mb": round(measured, 1), "planned_gpu_mb": round(float(plan["train_peak_mb"]), 1),
            "planned_reserved_mb": round(reserved, 1),
            "gpu_plan_ratio": round(measured / reserved, 3) if reserved else None}
