"""The HF TrainingArguments of a cell, every value from the (complete) spec or this attempt's
batches: precision, optimizer, and the evaluation/checkpoint schedule (`train.eval_every`).
"""

from __future__ import annotations

import math
from pathlib import Path

from emogrid.errors import CellError
from emogrid.study.spec_sections import TrainRecipe


def training_arguments(spec: dict, ckpt_dir: Path, batch: dict, steps_per_epoch: int, *, precision: str,
                       cuda: bool, processes: int, report_to="none", run_name: str | None = None):
    """The HF TrainingArguments of a cell: every value from the (complete) spec or this attempt's
    batches, none from a default of this module's own."""
    from transformers import TrainingArguments

    from emogrid.training import distributed

    train = TrainRecipe.from_spec(spec)
    metric = train.metric
    seed = int(spec["cell"]["seed"])
    args = TrainingArguments(
        output_dir=str(ckpt_dir),
        # train.batch_size is the global micro-batch: split over the processes of a multi-GPU cell
        per_device_train_batch_size=distributed.per_device_batch(batch["batch_size"], processes),
        gradient_accumulation_steps=batch["grad_accum"],
        # a retry's halved evaluation batch, else the spec's
        per_device_eval_batch_size=int(batch.get("eval_batch_size", train.eval_batch_size)),
        learning_rate=train.lr,
        lr_scheduler_type=train.scheduler,
        warmup_steps=train.warmup_ratio,  # a float < 1 is a ratio
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        num_train_epochs=epochs_to_train(spec),
        max_steps=steps_to_train(spec),  # -1 = by epochs; else it replaces them (train.max_steps)
        # the grid folds a method's optimizer (QLoRA: adamw_8bit) into train.optim
        optim=optimizer_name(train.optim, cuda),
        bf16=precision == "bf16", fp16=precision == "fp16",
        # Evaluate + save every `train.eval_every`: early stopping counts evaluations, the best
        # one's weights are restored at the end (unless train.restore_best is false), and the
        # saves are the resume points.
        **eval_schedule(train.eval_every, steps_per_epoch),
        # no save_total_limit: emogrid.training.checkpoint_policy keeps the latest checkpoint
        # and the best one's weights (HF's rotation keeps two full checkpoints)
        save_total_limit=None, load_best_model_at_end=train.restore_best, metric_for_best_model=metric,
        greater_is_better=metric not in ("loss",),
        restore_callback_states_from_checkpoint=True,  # early-stopping patience survives a resume
        logging_strategy="steps", logging_steps=max(1, steps_per_epoch // 4), logging_first_step=True,
        logging_nan_inf_filter=False,  # the filter syncs host<->device every step and hides NaN
        seed=seed, data_seed=seed,
        use_cpu=not cuda, dataloader_num_workers=0, dataloader_pin_memory=cuda,
        remove_unused_columns=False, label_names=["labels"],
        report_to=report_to, run_name=run_name, disable_tqdm=True, save_only_model=False,
        **distributed.parallel_arguments(spec, cuda, processes),
    )
    distributed.use_fsdp_precision(args, precision)  # FSDP2: fp32 gradient reduction
    return args


def optimizer_name(optim: str, cuda: bool) -> str:
    """The Trainer's optimizer for train.optim. AdamW on CUDA is torch's fused kernel: one launch
    per step instead of a loop of foreach kernels, and no state-sized temporaries (the planner
    counts none); the same update rule, so results do not depend on it. On the CPU the
    for-loop AdamW stays (the CPU tests' reference numbers)."""
    if optim == "adamw_8bit":
        return "adamw_bnb_8bit"
    return "adamw_torch_fused" if cuda else "adamw_torch"


def epochs_to_train(spec: dict) -> float:
    """train.epochs, times a tuning rung's share of it (successive halving: emogrid.study.tuning)."""
    return float(TrainRecipe.from_spec(spec).epochs) * float((spec.get("tuning") or {}).get("budget", 1.0))


def steps_to_train(spec: dict) -> int:
    """train.max_steps (times a tuning rung's share of it, rounded up), or -1: train by epochs."""
    max_steps = TrainRecipe.from_spec(spec).max_steps
    if max_steps is None:
        return -1
    return max(1, math.ceil(int(max_steps) * float((spec.get("tuning") or {}).get("budget", 1.0))))


def optimizer_steps(spec: dict, steps_per_epoch: int) -> int:
    """The optimizer steps a cell trains, counted as the Trainer counts them (AdaLoRA's schedule
    must end on the last real step)."""
    steps = steps_to_train(spec)
    return steps if steps > 0 else math.ceil(steps_per_epoch * epochs_to_train(spec))


def precision_of(spec: dict) -> str:
    import torch

    from emogrid.models.loading import bf16_supported

    want = TrainRecipe.from_spec(spec).precision
    if want == "auto":
        return "bf16" if bf16_supported() else "fp32"
    if want == "fp16" and not torch.cuda.is_available():
        raise CellError("train.precision fp16 needs a CUDA GPU", hint="use precision auto or fp32 on CPU")
    return want


def eval_schedule(value, steps_per_epoch: int) -> dict:
    """TrainingArguments for evaluating (and checkpointing) every `train.eval_every`."""
    unit, amount = parse_eval_every(value)
    if unit == "epoch" and amount == 1.0:
        return {"eval_strategy": "epoch", "save_strategy": "epoch"}
    steps = int(amount) if unit == "steps" else max(1, round(amount * max(steps_per_epoch, 1)))
    return {"eval_strategy": "steps", "eval_steps": steps, "save_strategy": "steps", "save_steps": steps}


def parse_eval_every(value) -> tuple[str, float]:
    """`epoch` / "0.25 epoch" / "2 epochs" / "50 steps" / 50 -> ("epoch", 0.25) or ("steps", 50)."""
    import re

    if isinstance(value, bool) or value is None:
        raise CellError(f"train.eval_every: expected epoch, '<x> epoch(s)' or '<n> steps', got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise CellError(f"train.eval_every: expected at least 1 step, got {value}")
        return "steps", value
    text = str(value).strip().lower()
    if text == "epoch":
        return "epoch", 1.0
    match = re.fullmatch(r"(\d+(?:\.\d+)?|\.\d+) ?(epochs?|steps?)", text)
    if not match or float(match.group(1)) <= 0:
        raise CellError(f"train.eval_every: expected epoch, '<x> epoch(s)' or '<n> steps', got {value!r}")
    amount, unit = float(match.group(1)), match.group(2)
    if unit.startswith("step"):
        if amount != int(amount):
            raise CellError(f"train.eval_every: a number of steps must be whole, got {value!r}")
        return "steps", int(amount)
    return "epoch", amount
