"""A failed attempt and the next one: what failed (failure.json, with a hint and whether a retry
can help) and the retry's batches, read from the previous failure.json (a CUDA OOM halves the
per-GPU micro-batch and doubles accumulation, or halves the evaluation batch; a hopeless error
is not retried).

A cell over several processes: every rank that fails (or is preempted) leaves its own outcome in
<out>/.ranks/, and the launcher (`emogrid train --processes N`) merges them into the one
failure.json once torchrun returns: an OOM on rank 1 is the cell's failure even when rank 0
only saw its peer vanish.
"""

from __future__ import annotations

import logging
from pathlib import Path

from emogrid import atomic
from emogrid.errors import EmogridError, NaNLossError
from emogrid.study.spec_sections import TrainRecipe
from emogrid.training.cell_data import read_json
from emogrid.training.provenance import provenance

log = logging.getLogger("emogrid.training.train")  # run.log (emogrid.training.train sets up its handler)


RANKS_DIR = ".ranks"


def plan_attempt(spec: dict, out: Path, attempt: int, processes: int = 1) -> dict:
    """Micro-batch / accumulation for this attempt, after reading the previous failure.json.

    `batch_size` is the cell's global micro-batch, split over `processes` (distributed.per_device_batch);
    an OOM retry halves what each process holds."""
    batch = TrainRecipe.from_spec(spec).batch
    prev = read_json(out / "failure.json") if attempt > 1 else None
    if not prev or prev.get("provenance", {}).get("config_hash") != spec["config_hash"]:
        return batch
    err = prev.get("error", {})
    if not err.get("retryable", True):
        raise _Repeat(err)
    # Start from the previous attempt's batches: a halved attempt that failed for another reason
    # (a node fault, preemption) must not go back to the batch that ran out of memory.
    prev_bs = int(prev.get("batch_size", batch["batch_size"]))
    prev_acc = int(prev.get("grad_accum", batch["grad_accum"]))
    if prev_bs * prev_acc == batch["batch_size"] * batch["grad_accum"] and prev_bs >= 1:
        batch.update(batch_size=prev_bs, grad_accum=prev_acc)
    batch["eval_batch_size"] = max(1, min(batch["eval_batch_size"], int(prev.get("eval_batch_size") or 1 << 30)))
    if err.get("type") == "OutOfMemoryError":
        if err.get("phase") == "eval":  # evaluation ran out: only its batch shrinks, training is unchanged
            if batch["eval_batch_size"] <= 1:
                raise _Repeat({**err, "retryable": False,
                               "hint": "out of memory evaluating one example: lower train.max_length or use qlora"})
            batch["eval_batch_size"] //= 2
            log.info("attempt %d after CUDA OOM in evaluation: eval batch %d", attempt, batch["eval_batch_size"])
            return batch
        smaller = smaller_micro_batch(batch["batch_size"], batch["grad_accum"], processes)
        if smaller is None:
            raise _Repeat(
                {
                    **err,
                    "retryable": False,
                    "hint": "out of memory even at micro-batch 1 per process: use qlora, a smaller model or "
                            "train.max_length",
                }
            )
        batch.update(batch_size=smaller[0], grad_accum=smaller[1])
        log.info("attempt %d after CUDA OOM: micro-batch %d (%d per process) x accumulation %d (same effective "
                 "batch)", attempt, batch["batch_size"], batch["batch_size"] // max(processes, 1), batch["grad_accum"])
    return batch


def smaller_micro_batch(batch_size: int, grad_accum: int, processes: int = 1) -> tuple[int, int] | None:
    """(global micro-batch, accumulation) after an OOM: each process's share halved, or divided by
    its smallest prime factor when odd, with accumulation multiplied by the same factor so the
    effective batch is exactly the same. None when each process already holds one example (or
    the batch does not split over the processes: that is a config error, reported elsewhere)."""
    processes = max(int(processes), 1)
    if batch_size % processes:
        return None
    per_process = batch_size // processes
    if per_process <= 1:
        return None
    factor = next(f for f in range(2, per_process + 1) if per_process % f == 0)
    return per_process // factor * processes, grad_accum * factor


class _Repeat(EmogridError):
    """The previous attempt hit an error a retry cannot fix; fail without loading anything."""

    def __init__(self, err: dict):
        super().__init__(f"not retrying: the previous attempt failed with {err.get('type')}: {err.get('message')}",
                         hint=err.get("hint"))
        self.previous = err


def describe_failure(err: BaseException, batch: dict) -> dict:
    """failure.json's `error` for `err`: type, message, hint, and whether a retry can help."""
    if isinstance(err, _Repeat):
        msg = str(err.previous.get("message", ""))
        prefix = "not retrying, the previous attempt failed the same way: "
        return {**err.previous, "retryable": False, "message": msg if msg.startswith(prefix) else prefix + msg}
    from emogrid.models.devices import is_oom

    if is_oom(err):
        if getattr(err, "emogrid_phase", "train") == "eval":
            return {"type": "OutOfMemoryError", "retryable": True, "phase": "eval",
                    "message": f"CUDA out of memory in evaluation at batch {batch.get('eval_batch_size', '?')}",
                    "hint": "a retry halves the evaluation batch; or lower train.eval_batch_size"}
        from emogrid.training import distributed

        bs = batch.get("batch_size", "?")
        n = distributed.world_size()
        share = f" ({bs // n} per process over {n} processes)" if n > 1 and isinstance(bs, int) else ""
        return {"type": "OutOfMemoryError", "retryable": True, "phase": "train",
                "message": f"CUDA out of memory at micro-batch {bs}{share}",
                "hint": "a retry halves each process's micro-batch and doubles grad accumulation; "
                        "or lower train.batch_size / train.max_length, or use qlora"}
    if isinstance(err, NaNLossError):
        return {"type": "NaNLoss", "retryable": False, "message": str(err.args[0]), "hint": err.hint}
    if isinstance(err, EmogridError):
        return {"type": type(err).__name__, "retryable": False, "message": str(err.args[0]), "hint": err.hint}
    return {"type": type(err).__name__, "retryable": True, "message": str(err) or repr(err),
            "hint": "unexpected error (see the traceback in run.log); a retry may help if it was transient"}


def write_failure(out: Path, spec: dict, info: dict, batch: dict, attempt: int, started: str) -> None:
    """failure.json of a single-process cell (and rank 0's provisional one under torchrun);
    under torchrun every failing rank also leaves its outcome for the launcher to merge."""
    from emogrid.training import distributed

    # Optional reads by design: `spec` is {} when the failure is that it could not be read.
    record = {"cell": spec.get("cell", {}), "cell_id": spec.get("cell_id"), "status": "failed",
              "error": info, "attempt": attempt, **batch,
              "provenance": provenance(spec, None, started)}
    if distributed.world_size() > 1:
        rank = distributed.rank()
        atomic.write_json(out / RANKS_DIR / f"rank{rank}.json", {"outcome": "failed", "rank": rank, "record": record})
    if distributed.is_main():
        atomic.write_json(out / "failure.json", record)


def write_preempted(out: Path) -> None:
    """Under torchrun: this rank stopped on SIGTERM with the checkpoint saved (no failure)."""
    from emogrid.training import distributed

    if distributed.world_size() > 1:
        rank = distributed.rank()
        atomic.write_json(out / RANKS_DIR / f"rank{rank}.json", {"outcome": "preempted", "rank": rank})


def clear_rank_outcomes(out: Path) -> None:
    import shutil

    shutil.rmtree(out / RANKS_DIR, ignore_errors=True)


def merge_rank_outcomes(out: Path) -> dict:
    """What the ranks of a torchrun cell left in <out>/.ranks/, decided into one outcome:
    {"failure": the cell's failure record or None, "preempted": bool, "ranks": {rank: outcome}}.

    The decisive failure: an OOM (in training before one in evaluation) on any rank, else an
    error a retry cannot fix, else rank 0's, else the lowest rank's. The others are usually
    consequences (a peer that vanished mid-collective)."""
    ranks = {}
    for path in sorted((out / RANKS_DIR).glob("rank*.json")):
        outcome = read_json(path)
        if isinstance(outcome, dict) and isinstance(outcome.get("rank"), int):
            ranks[outcome["rank"]] = outcome
    failed = [o for o in ranks.values() if o.get("outcome") == "failed" and isinstance(o.get("record"), dict)]

    def weight(outcome: dict) -> tuple:
        err = outcome["record"].get("error") or {}
        if err.get("type") == "OutOfMemoryError":
            rank_of_kind = 0 if err.get("phase") != "eval" else 1
        elif not err.get("retryable", True):
            rank_of_kind = 2
        else:
            rank_of_kind = 3
        return rank_of_kind, outcome["rank"]

    failure = None
    if failed:
        chosen = min(failed, key=weight)
        failure = {**chosen["record"], "rank": chosen["rank"],
                   "ranks": {str(o["rank"]): (o["record"].get("error") or {}).get("type") for o in failed}}
    summary = {r: o.get("outcome") for r, o in ranks.items()}
    return {"failure": failure, "preempted": any(o.get("outcome") == "preempted" for o in ranks.values()),
            "ranks": summary}
