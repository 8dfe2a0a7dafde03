"""A failed attempt and the next one: what failed (failure.json, with a hint and whether a retry
can help) and the retry's batches, read from the previous failure.json (a CUDA OOM halves the
micro-batch and doubles accumulation, or halves the evaluation batch; a hopeless error is not
retried).
"""

from __future__ import annotations

import logging
from pathlib import Path

from emogrid import atomic
from emogrid.errors import EmogridError, NaNLossError
from emogrid.training.cell_data import read_json
from emogrid.training.provenance import provenance

log = logging.getLogger("emogrid.training.train")  # run.log (emogrid.training.train sets up its handler)


def plan_attempt(spec: dict, out: Path, attempt: int) -> dict:
    """Micro-batch / accumulation for this attempt, after reading the previous failure.json."""
    train = spec["train"]
    batch = {"batch_size": int(train["batch_size"]), "grad_accum": int(train["grad_accum"]),
             "eval_batch_size": int(train["eval_batch_size"])}
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
        if batch["batch_size"] <= 1:
            raise _Repeat(
                {
                    **err,
                    "retryable": False,
                    "hint": "out of memory even at micro-batch 1: use qlora, a smaller model or train.max_length",
                }
            )
        batch.update(batch_size=batch["batch_size"] // 2, grad_accum=batch["grad_accum"] * 2)
        log.info("attempt %d after CUDA OOM: micro-batch %d x accumulation %d (same effective batch)",
                 attempt, batch["batch_size"], batch["grad_accum"])
    return batch


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
        bs = batch.get("batch_size", "?")
        return {"type": "OutOfMemoryError", "retryable": True, "phase": "train",
                "message": f"CUDA out of memory at micro-batch {bs}",
                "hint": "a retry halves the micro-batch and doubles grad accumulation; "
                        "or lower train.batch_size / train.max_length, or use qlora"}
    if isinstance(err, NaNLossError):
        return {"type": "NaNLoss", "retryable": False, "message": str(err.args[0]), "hint": err.hint}
    if isinstance(err, EmogridError):
        return {"type": type(err).__name__, "retryable": False, "message": str(err.args[0]), "hint": err.hint}
    return {"type": type(err).__name__, "retryable": True, "message": str(err) or repr(err),
            "hint": "unexpected error (see the traceback in run.log); a retry may help if it was transient"}


def write_failure(out: Path, spec: dict, info: dict, batch: dict, attempt: int, started: str) -> None:
    # Optional reads by design: `spec` is {} when the failure is that it could not be read.
    record = {"cell": spec.get("cell", {}), "cell_id": spec.get("cell_id"), "status": "failed",
              "error": info, "attempt": attempt, **batch,
              "provenance": provenance(spec, None, started)}
    atomic.write_json(out / "failure.json", record)
