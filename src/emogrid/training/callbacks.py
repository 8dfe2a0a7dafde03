"""The Trainer callbacks of a cell: progress lines in run.log (NaN loss stops the cell),
AdaLoRA's rank reallocation, and save-and-stop on SIGTERM (`signals.SigtermCheckpoint`).
"""

from __future__ import annotations

import logging
import math

from transformers import TrainerCallback

from emogrid.errors import NaNLossError

log = logging.getLogger("emogrid.training.train")  # run.log (emogrid.training.train sets up its handler)


class ProgressLog(TrainerCallback):
    """Human-readable progress in run.log; NaN loss stops the cell with a hint.

    Checks only at logging steps (the loss is synced then anyway): no extra host syncs.
    """

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            loss = float(logs["loss"])
            log.info("step %d/%d epoch %.2f loss %.4f lr %.3g", state.global_step, state.max_steps,
                     logs.get("epoch", state.epoch or 0), loss, logs.get("learning_rate", float("nan")))
            if not math.isfinite(loss):
                raise NaNLossError(f"training loss became {loss} at step {state.global_step}",
                                   hint="lower train.lr, raise train.warmup_ratio, or use precision fp32")
        elif any(k.startswith("eval_") for k in logs):
            shown = ", ".join(f"{k[5:]} {v:.4f}" for k, v in logs.items()
                              if k.startswith("eval_") and isinstance(v, float) and "runtime" not in k
                              and "per_second" not in k)
            log.info(
                "eval after epoch %.2f (step %d): %s", logs.get("epoch", state.epoch or 0), state.global_step, shown
            )


class AdaLoraStep(TrainerCallback):
    """AdaLoRA reallocates rank after each optimizer step (before zero_grad: it reads the grads)."""

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        base = getattr(model, "base_model", model)
        base.update_and_allocate(state.global_step)


class SigtermSave(TrainerCallback):
    """Turns a pending SIGTERM into save-and-stop at the end of the current optimizer step.

    `stop`: the `signals.SigtermCheckpoint` that owns the request. Under torchrun the ranks
    agree on it first (`stop.agreed()`, an all-reduce at every step end): a rank that saved
    and stopped alone would wait in the save path's collectives while the others all-reduce
    gradients, until the job is killed."""

    def __init__(self, stop):
        self.stop = stop

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop.agreed():
            control.should_save = True
            control.should_training_stop = True

    def on_epoch_end(self, args, state, control, **kwargs):
        # Stopping ends the epoch early; its evaluation would enter best-model selection and
        # early stopping with a partial epoch, and the checkpoint is already saved. (The agreed
        # flag: a SIGTERM landing on one rank after the step end must not skip its evaluation alone.)
        if self.stop.stopping:
            control.should_evaluate = False
            control.should_save = False
