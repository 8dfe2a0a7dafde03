"""`emogrid train`: train and evaluate one grid cell, write metrics.json (docs/CONTRACTS.md).

Flow: spec + data -> model (+ adapter) -> HF Trainer (dynamic padding, eval every `train.eval_every`
for early stopping, checkpoints in <out>/.checkpoint for resume) -> val/test predictions ->
metrics.json, predictions.jsonl, train_log.jsonl. Any failure leaves failure.json (not a
Snakemake output) and a one-paragraph message; a retry reads it to skip hopeless retries
and to halve the micro-batch after CUDA OOM.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from transformers import Trainer, TrainerCallback

from emogrid import atomic
from emogrid.errors import CellError, DataError, EmogridError

CHECKPOINT_DIR = ".checkpoint"
log = logging.getLogger("emogrid.train")


class NaNLossError(EmogridError):
    """Training loss became NaN/inf."""


class Preempted(BaseException):
    """SIGTERM during training: a checkpoint was saved, outputs were not written."""


# ---------------------------------------------------------------- CLI


def configure_parser(p) -> None:
    p.add_argument("--spec", required=True, help="cell spec JSON, or @path to a JSON file")
    p.add_argument("--data", required=True, help="subset directory (train/val/test.jsonl + manifest.json)")
    p.add_argument("--out", required=True, help="cell run directory")
    p.add_argument("--attempt", type=int, default=1, help="retry number (Snakemake's `attempt`), from 1")
    p.add_argument("--fetched", default="", help="fetch receipt of the model (emogrid fetch): load its "
                                                 "snapshot instead of asking the hub")
    p.add_argument("--processes", type=int, default=1,
                   help="devices for this cell: N > 1 relaunches under torchrun (DDP; FSDP for full "
                        "fine-tuning on CUDA), train.batch_size split over them (emogrid.distributed)")


def _relaunch_argv(args) -> list[str]:
    argv = ["--spec", args.spec, "--data", str(args.data), "--out", str(args.out),
            "--attempt", str(args.attempt), "--processes", str(args.processes)]
    if getattr(args, "fetched", ""):
        argv += ["--fetched", args.fetched]
    return argv


def run(args) -> int:
    from emogrid import distributed, results

    processes = int(getattr(args, "processes", 1) or 1)
    if processes > 1 and distributed.world_size() == 1:  # the launcher: N copies of this command
        Path(args.out).mkdir(parents=True, exist_ok=True)
        return distributed.launch(_relaunch_argv(args), processes, cpu_threads())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _setup_logging(out / "run.log", main=distributed.is_main())
    started = _now()
    from emogrid.devices import pin_visible_devices

    pinned = pin_visible_devices()  # before anything initialises CUDA
    if pinned:
        log.warning(pinned)
        print(f"emogrid train: {pinned}", file=sys.stderr)
    spec: dict = {}
    batch = {}
    try:
        if distributed.is_main():  # `emogrid status`: running while this process lives, else interrupted
            results.claim(out)
        spec = load_spec(args.spec)
        if getattr(args, "fetched", ""):
            use_fetched_model(spec, args.fetched)
        batch = plan_attempt(spec, out, int(args.attempt))
        with _finishing() as finishing:
            run_cell(spec, Path(args.data), out, batch, started, on_finishing=finishing)
            if distributed.is_main():  # only rank 0 writes the cell's files
                check_outputs(out, spec)
                (out / "failure.json").unlink(missing_ok=True)
        if finishing.signals:
            log.info("signal %s arrived after the results were written: the cell is finished",
                     ", ".join(map(str, finishing.signals)))
        return 0
    except (KeyboardInterrupt, Preempted) as err:  # the checkpoint stays for the resume
        log.error("interrupted; the next run resumes from the last checkpoint")
        print(f"emogrid train: interrupted; rerun to resume from {out / CHECKPOINT_DIR}", file=sys.stderr)
        return 143 if isinstance(err, Preempted) else 130
    except BaseException as err:  # noqa: BLE001 - every failure must leave a record
        info = describe_failure(err, batch)
        if not isinstance(err, EmogridError):
            log.error("traceback:\n%s", traceback.format_exc())
        if distributed.is_main():
            write_failure(out, spec, info, batch, int(args.attempt), started)
        msg = f"emogrid train: cell {spec.get('cell_id', '?')} failed: {info['type']}: {info['message']}"
        if info.get("hint"):
            msg += f" -- what to do: {info['hint']}"
        msg += f" (details in {out / 'run.log'}, record in {out / 'failure.json'})"
        log.error(msg)
        print(msg, file=sys.stderr)
        return 2 if not info["retryable"] else 1
    finally:
        if distributed.is_main():
            results.release(out)


def check_outputs(out: Path, spec: dict) -> None:
    """The train rule's own check before it declares success: metrics.json must pass the
    contract (schema, cell id, config hash) that every reader applies."""
    from emogrid import results

    res = results.read(out / "metrics.json", "metrics", cell_id=spec["cell_id"],
                       config_hash=spec["config_hash"])
    if not res.valid:
        (out / "metrics.json").unlink(missing_ok=True)
        raise RuntimeError(f"the metrics this cell wrote fail the metrics.json contract "
                           f"(a bug in emogrid): {res.reason}")


# Tests: called right after metrics.json is in place, inside the finishing window (a signal
# sent here must not cost the finished cell).
AFTER_METRICS_HOOK = None


class _finishing:  # noqa: N801 - a context manager
    """From the moment metrics.json is about to be written until the job exits, SIGINT and
    SIGTERM are recorded instead of acted on: a cell whose results are in place always exits
    0 (Ctrl-C or a preemption landing in that split second must not make Snakemake throw the
    finished results away). Before that moment nothing changes: an interrupt stops training
    and the checkpoint stays for the resume."""

    def __enter__(self):
        self.signals: list[int] = []
        self.previous: dict = {}
        return self

    def __call__(self):  # on_finishing: results are about to be written
        import signal

        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, lambda signum, frame: self.signals.append(signum))

    def __exit__(self, *exc):
        import signal

        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


def load_spec(arg: str) -> dict:
    try:
        text = Path(arg[1:]).read_text(encoding="utf-8") if arg.startswith("@") else arg
        spec = json.loads(text)
    except (OSError, json.JSONDecodeError) as err:
        raise CellError(f"cannot read the cell spec: {err}", hint="pass --spec as JSON or @path/to/spec.json") from err
    if not isinstance(spec, dict):
        raise CellError(f"the cell spec is a JSON {type(spec).__name__}, expected an object",
                        hint="pass --spec as JSON or @path/to/spec.json")
    from emogrid.grid import check_spec, config_hash

    check_spec(spec)  # complete: the trainer reads every key strictly, never with a default of its own
    spec.setdefault("config_hash", config_hash(spec))  # optional: a hand-written spec is hashed here
    return spec


def use_fetched_model(spec: dict, receipt_file: str) -> None:
    """Point the spec at the fetched snapshot; provenance records the exact commit.
    (After hashing: where the files lie is not part of what the cell computes.)"""
    from emogrid.fetch import describe, read_receipt

    receipt = read_receipt(receipt_file)
    spec["model"]["path"] = receipt["snapshot"]
    spec["model"]["source"] = describe(receipt)


# ---------------------------------------------------------------- retries and failures


def plan_attempt(spec: dict, out: Path, attempt: int) -> dict:
    """Micro-batch / accumulation for this attempt, after reading the previous failure.json."""
    train = spec["train"]
    batch = {"batch_size": int(train["batch_size"]), "grad_accum": int(train["grad_accum"]),
             "eval_batch_size": int(train["eval_batch_size"])}
    prev = _read_json(out / "failure.json") if attempt > 1 else None
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

    if isinstance(err, _Repeat):
        msg = str(err.previous.get("message", ""))
        prefix = "not retrying, the previous attempt failed the same way: "
        return {**err.previous, "retryable": False, "message": msg if msg.startswith(prefix) else prefix + msg}
    from emogrid.devices import is_oom

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


# ---------------------------------------------------------------- the cell


def run_cell(spec: dict, data_dir: Path, out: Path, batch: dict, started: str, on_model=None,
             on_finishing=None) -> dict:
    """Train + evaluate one cell; `on_model(model)` sees the model before training (tests);
    `on_finishing()` is called just before the results are written (emogrid train defers
    signals from there on)."""
    data = load_data(data_dir, spec)
    import torch
    from transformers import set_seed
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    set_seed(int(spec["cell"]["seed"]))
    if not torch.cuda.is_available():
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:  # fp32 matmuls (fp32 precision, fp32 adapter/head weights) on tensor cores: TF32
        torch.set_float32_matmul_precision("high")
    torch.set_num_threads(cpu_threads())

    from emogrid.adapters import apply_method, count_parameters
    from emogrid.models import load_model, upcast_trainable

    multi = data["multi_label"]
    labels = data["labels"]
    log.info("cell %s: %s / %s, %d labels, train %d val %d test %d, micro-batch %d x accum %d",
             spec["cell_id"], spec["model"]["name"], spec["method"]["name"], len(labels),
             len(data["train"]), len(data["val"]), len(data["test"]), batch["batch_size"], batch["grad_accum"])
    if spec["method"]["quantize"] == "int8":
        from emogrid.devices import quiet_int8_casts

        quiet_int8_casts()  # bitsandbytes warns on every int8 matmul input on CUDA: once is enough
    model, tokenizer, family = load_model(spec, len(labels), multi_label=multi, labels=labels)
    # The Trainer's own count (AdaLoRA's schedule must end on the last real step).
    steps_per_epoch = math.ceil(math.ceil(len(data["train"]) / batch["batch_size"]) / batch["grad_accum"])
    total_steps = steps_per_epoch * int(spec["train"]["epochs"])
    model = apply_method(model, spec, family, total_step=total_steps)
    upcast_trainable(model)
    trainable, total = count_parameters(model)
    if on_model is not None:
        on_model(model)
    log.info("family %s, parameters: %d trainable of %d (%.3f%%)", family, trainable, total, 100 * trainable / total)

    max_len = int(spec["train"]["max_length"])
    sets = {name: encode(tokenizer, rows, max_len, len(labels), multi) for name, rows in data.items()
            if name in ("train", "val", "test")}
    from emogrid import distributed

    main = distributed.is_main()
    resume = find_checkpoint(out / CHECKPOINT_DIR, spec["config_hash"])
    trainer, precision = build_trainer(spec, model, tokenizer, sets, out / CHECKPOINT_DIR, batch,
                                       labels, multi, steps_per_epoch)
    (out / CHECKPOINT_DIR).mkdir(exist_ok=True)
    if main:
        atomic.write_json(out / CHECKPOINT_DIR / "config_hash.json", {"config_hash": spec["config_hash"]})
    if resume:
        log.info("resuming from %s", resume)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with _sigterm_checkpoint() as stop:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if stop.requested:
        log.error("SIGTERM: checkpoint saved at step %d; the next run resumes from it", trainer.state.global_step)
        raise Preempted
    train_seconds = time.perf_counter() - t0
    state = trainer.state
    if int(state.global_step) == 0:  # never report an untrained model as a result
        raise CellError("the cell ran zero optimizer steps",
                        hint="check train.epochs (>= 1), train.batch_size and the subset size")
    steps_here = state.global_step - _resumed_step(resume)

    t0 = time.perf_counter()
    evals = {}
    predictions = []
    for split in ("val", "test"):
        evals[split], rows = evaluate_split(trainer, sets[split], data[split], labels, multi,
                                            float(spec["data"]["threshold"]), split)
        predictions.extend(rows)
    eval_seconds = time.perf_counter() - t0

    n_train = len(sets["train"])
    epochs_done = steps_here / max(steps_per_epoch, 1)
    tokens_per_epoch = sum(len(x["input_ids"]) for x in sets["train"])
    efficiency = {
        "trainable_params": trainable, "total_params": total,
        "trainable_percent": round(100.0 * trainable / total, 4),
        "train_seconds": round(train_seconds, 3), "eval_seconds": round(eval_seconds, 3),
        **peak_memory(),
        **gpu_plan_check(spec),
        "train_samples_per_second": round(n_train * epochs_done / train_seconds, 3) if train_seconds else 0.0,
        "train_tokens_per_second": round(tokens_per_epoch * epochs_done / train_seconds, 3) if train_seconds else 0.0,
        "epochs_run": int(math.ceil(round(state.epoch or 0, 6))),
        "best_step": int(state.best_global_step or state.global_step),
        "optimizer_steps": int(state.global_step),
        "optimizer_steps_this_run": int(steps_here),
        "resumed_from_step": _resumed_step(resume),
        "batch_size": batch["batch_size"], "grad_accum": batch["grad_accum"],
        "effective_batch_size": batch["batch_size"] * batch["grad_accum"],
        "processes": distributed.world_size(),
        "parallel": distributed.parallel_mode(spec, torch.cuda.is_available(), distributed.world_size()),
    }
    log.info("done: val %s %.4f, test %s %.4f; %d optimizer steps (%d this run), %.1f s train",
             spec["train"]["metric"], evals["val"].get(spec["train"]["metric"], float("nan")),
             "accuracy", evals["test"]["accuracy"], state.global_step, steps_here, train_seconds)
    metrics = {"cell": spec["cell"], "cell_id": spec["cell_id"], "status": "ok",
               "val": evals["val"], "test": evals["test"], "efficiency": efficiency,
               "provenance": provenance(spec, data, started, precision)}
    if not main:  # under torchrun only rank 0 writes the cell's files
        return metrics
    if spec["train"]["save_adapter"]:
        save_adapter(model, tokenizer, out / "adapter")
    if on_finishing is not None:
        on_finishing()
    atomic.write_jsonl(out / "predictions.jsonl", predictions)
    atomic.write_jsonl(out / "train_log.jsonl", train_log(state.log_history))
    atomic.write_json(out / "metrics.json", metrics)
    if AFTER_METRICS_HOOK is not None:
        AFTER_METRICS_HOOK(out)
    shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    return metrics


# ---------------------------------------------------------------- the trainer


def precision_of(spec: dict) -> str:
    import torch

    from emogrid.models import bf16_supported

    want = spec["train"]["precision"]
    if want == "auto":
        return "bf16" if bf16_supported() else "fp32"
    if want == "fp16" and not torch.cuda.is_available():
        raise CellError("train.precision fp16 needs a CUDA GPU", hint="use precision auto or fp32 on CPU")
    return want


def training_arguments(spec: dict, ckpt_dir: Path, batch: dict, steps_per_epoch: int, *, precision: str,
                       cuda: bool, processes: int, report_to="none", run_name: str | None = None):
    """The HF TrainingArguments of a cell: every value from the (complete) spec or this attempt's
    batches, none from a default of this module's own."""
    from transformers import TrainingArguments

    from emogrid import distributed

    train = spec["train"]
    metric = train["metric"]
    seed = int(spec["cell"]["seed"])
    return TrainingArguments(
        output_dir=str(ckpt_dir),
        # train.batch_size is the global micro-batch: split over the processes of a multi-GPU cell
        per_device_train_batch_size=distributed.per_device_batch(batch["batch_size"], processes),
        gradient_accumulation_steps=batch["grad_accum"],
        # a retry's halved evaluation batch, else the spec's
        per_device_eval_batch_size=int(batch.get("eval_batch_size", train["eval_batch_size"])),
        learning_rate=float(train["lr"]),
        lr_scheduler_type=train["scheduler"],
        warmup_steps=float(train["warmup_ratio"]),  # a float < 1 is a ratio
        weight_decay=float(train["weight_decay"]),
        max_grad_norm=float(train["max_grad_norm"]),
        num_train_epochs=float(train["epochs"]),
        # the grid folds a method's optimizer (QLoRA: adamw_8bit) into train.optim
        optim="adamw_bnb_8bit" if train["optim"] == "adamw_8bit" else "adamw_torch",
        bf16=precision == "bf16", fp16=precision == "fp16",
        # Evaluate + save every `train.eval_every`: early stopping counts evaluations, the best
        # one's weights are restored at the end, and the saves are the resume points.
        **eval_schedule(train["eval_every"], steps_per_epoch),
        save_total_limit=1, load_best_model_at_end=True, metric_for_best_model=metric,
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


def build_trainer(spec, model, tokenizer, sets, ckpt_dir: Path, batch, labels, multi, steps_per_epoch):
    import torch
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback

    from emogrid import distributed, tracking

    tracked = tracking.setup(spec, Path(ckpt_dir).parent)  # live curves: train.report_to
    train = spec["train"]
    precision = precision_of(spec)
    optim = train["optim"]
    cuda = torch.cuda.is_available()
    args = training_arguments(spec, ckpt_dir, batch, steps_per_epoch, precision=precision, cuda=cuda,
                              processes=distributed.world_size(), report_to=tracked["report_to"],
                              run_name=tracked["run_name"])
    from emogrid.devices import single_process_n_gpu

    single_process_n_gpu(args)  # never nn.DataParallel: one process, one GPU (or DDP via torchrun)
    callbacks = [EarlyStoppingCallback(early_stopping_patience=int(train["patience"])),
                 ProgressLog(), SigtermSave(), *([AdaLoraStep()] if spec["method"]["peft"] == "adalora" else []),
                 *tracked["callbacks"]]
    collator = _Collator(DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if cuda else None), multi)
    val_sorted = sorted(sets["val"], key=lambda x: len(x["input_ids"]))  # metrics ignore order
    trainer = CellTrainer(model=model, args=args, train_dataset=sets["train"], eval_dataset=val_sorted,
                          data_collator=collator, compute_metrics=_eval_metrics(labels, multi, spec),
                          callbacks=callbacks)
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # run.log has the progress; stdout stays quiet
    trainer.loraplus_ratio = spec["method"]["loraplus_ratio"]
    trainer.optim_8bit = optim == "adamw_8bit"
    trainer.length_grouping = bool(train["length_grouping"])
    trainer.length_chunks = 1 if cuda else 4
    return trainer, precision


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


def eval_schedule(value, steps_per_epoch: int) -> dict:
    """TrainingArguments for evaluating (and checkpointing) every `train.eval_every`."""
    unit, amount = parse_eval_every(value)
    if unit == "epoch" and amount == 1.0:
        return {"eval_strategy": "epoch", "save_strategy": "epoch"}
    steps = int(amount) if unit == "steps" else max(1, round(amount * max(steps_per_epoch, 1)))
    return {"eval_strategy": "steps", "eval_steps": steps, "save_strategy": "steps", "save_steps": steps}


class _Collator:
    """Dynamic padding for the inputs; labels stacked as long (single) or float (multi-label)."""

    def __init__(self, pad, multi: bool):
        self.pad, self.multi = pad, multi

    def __call__(self, features):
        import torch

        labels = [f["labels"] for f in features]
        batch = self.pad([{"input_ids": f["input_ids"], "attention_mask": f["attention_mask"]} for f in features])
        batch["labels"] = torch.tensor(labels, dtype=torch.float32 if self.multi else torch.long)
        return batch


def _eval_metrics(labels, multi, spec):
    threshold = float(spec["data"]["threshold"])

    def compute(eval_pred):
        from emogrid import metrics as M

        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        gold = eval_pred.label_ids
        gold_lists = [list(map(int, row.nonzero()[0])) for row in gold] if multi else [[int(g)] for g in gold]
        result, _, _ = M.from_logits(logits, gold_lists, labels, multi, threshold)
        return {k: v for k, v in result.items() if isinstance(v, float)}

    return compute


class CellTrainer(Trainer):
    """Trainer with LoRA+ (B matrices at ratio x lr, emogrid.loraplus), optionally 8-bit."""

    loraplus_ratio = None
    optim_8bit = False
    # Every head returns the micro-batch's *mean* loss and ignores `num_items_in_batch`, but
    # their forward takes **kwargs, so the Trainer would assume the loss is already normalised
    # for accumulation and skip `loss / grad_accum`: 8x2 would train with twice the gradient of
    # 16x1 (and clip differently). Divide by the accumulation steps, always.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Never pass num_items_in_batch to the model (the heads ignore it) nor multiply the loss
        # by the number of processes under DDP (`average_tokens_across_devices` assumes a sum).
        self.model_accepts_loss_kwargs = False
    length_grouping = False
    length_chunks = 1  # > 1: forward each training batch as length-sorted chunks (emogrid.chunking)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.length_chunks > 1 and model.training and not return_outputs:
            from emogrid.chunking import split_by_length

            parts = split_by_length(inputs, self.length_chunks)
            if len(parts) > 1:
                # Sequence-classification heads return each chunk's mean loss: weighting by the
                # chunk's share of rows gives the batch's mean loss.
                n = inputs["attention_mask"].shape[0]
                return sum(super(CellTrainer, self).compute_loss(model, part, num_items_in_batch=num_items_in_batch)
                           * (part["attention_mask"].shape[0] / n) for part in parts)
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    # An OOM while evaluating is marked so the retry shrinks the evaluation batch, not training's.
    def evaluate(self, *args, **kwargs):
        with _phase("eval"):
            return super().evaluate(*args, **kwargs)

    def predict(self, *args, **kwargs):
        with _phase("eval"):
            return super().predict(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        """Length-grouped batches (emogrid.sampling): far less padding with dynamic padding.

        Grouped by the effective batch (micro-batch x accumulation), so an OOM retry that halves
        the micro-batch still puts the same examples in each optimizer step."""
        if not self.length_grouping:
            return super()._get_train_sampler(train_dataset)
        from emogrid.sampling import LengthGroupedSampler

        ds = train_dataset if train_dataset is not None else self.train_dataset
        return LengthGroupedSampler([len(x["input_ids"]) for x in ds],
                                    self.args.train_batch_size * self.args.gradient_accumulation_steps
                                    * self.args.world_size,
                                    self.args.data_seed if self.args.data_seed is not None else self.args.seed)

    def create_optimizer(self, *args, **kwargs):
        if self.optimizer is None and self.loraplus_ratio:
            import torch

            from emogrid import loraplus

            if self.optim_8bit:
                import bitsandbytes as bnb

                cls = bnb.optim.AdamW8bit
            else:
                cls = torch.optim.AdamW
            # emogrid's groups, not peft's create_loraplus_optimizer (which drops weight decay)
            self.optimizer = loraplus.create_optimizer(
                self.model, cls, lr=self.args.learning_rate, ratio=float(self.loraplus_ratio),
                weight_decay=self.args.weight_decay, decay_names=self.get_decay_parameter_names(self.model))
            return self.optimizer
        return super().create_optimizer(*args, **kwargs)

    # AdaLoRA saves adapters pruned to its current rank pattern and resizes the live modules to
    # the live pattern on load, so a checkpoint from an earlier allocation cannot be loaded back
    # (best model, resume). Checkpoints are saved and loaded unpruned instead: masked ranks are
    # zeros in lora_E, so nothing is lost.
    def _save(self, *args, **kwargs):
        with _unpruned(self.model):
            return super()._save(*args, **kwargs)

    def _load_best_model(self, *args, **kwargs):
        with _unpruned(self.model):
            return super()._load_best_model(*args, **kwargs)

    def _load_from_checkpoint(self, *args, **kwargs):
        with _unpruned(self.model):
            return super()._load_from_checkpoint(*args, **kwargs)


class _phase:  # noqa: N801 - a context manager
    """Tags an exception raised inside with the phase it happened in (`err.emogrid_phase`)."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is not None and not hasattr(exc, "emogrid_phase"):
            try:
                exc.emogrid_phase = self.name
            except AttributeError:
                pass
        return False


class _unpruned:  # noqa: N801 - a context manager
    def __init__(self, model):
        configs = getattr(model, "peft_config", {}) or {}
        self.configs = [c for c in configs.values() if type(c).__name__ == "AdaLoraConfig"]

    def __enter__(self):
        self.saved = [c.rank_pattern for c in self.configs]
        for c in self.configs:
            c.rank_pattern = None

    def __exit__(self, *exc):
        for c, pattern in zip(self.configs, self.saved):
            c.rank_pattern = pattern
        return False


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


class _SigtermStop:
    requested = False


class _sigterm_checkpoint:  # noqa: N801 - used as a context manager
    """While training, SIGTERM (SLURM preemption/timeout) requests a checkpoint at the next step end."""

    def __enter__(self):
        import signal

        self.state = _SigtermStop()
        _STOP_FLAGS.append(self.state)
        self.previous = signal.signal(signal.SIGTERM, self._handler)
        return self.state

    def _handler(self, signum, frame):
        self.state.requested = True

    def __exit__(self, *exc):
        import signal

        signal.signal(signal.SIGTERM, self.previous)
        _STOP_FLAGS.remove(self.state)
        return False


_STOP_FLAGS: list[_SigtermStop] = []


class SigtermSave(TrainerCallback):
    """Turns a pending SIGTERM into save-and-stop at the end of the current optimizer step."""

    def on_step_end(self, args, state, control, **kwargs):
        if any(flag.requested for flag in _STOP_FLAGS):
            control.should_save = True
            control.should_training_stop = True

    def on_epoch_end(self, args, state, control, **kwargs):
        # Stopping ends the epoch early; its evaluation would enter best-model selection and
        # early stopping with a partial epoch, and the checkpoint is already saved.
        if any(flag.requested for flag in _STOP_FLAGS):
            control.should_evaluate = False
            control.should_save = False


# ---------------------------------------------------------------- data


def cpu_threads(environ=None) -> int:
    """Threads this job may use: Snakemake's OMP_NUM_THREADS, SLURM's allocation, else its cores.

    torch defaults to every physical core of the machine; with two jobs on two cores its
    OpenMP threads spin against each other and a step gets 20-40x slower (bench/README.md).
    """
    environ = os.environ if environ is None else environ
    for var in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK"):
        value = environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_REBUILD = "the subset is damaged: delete its folder and rerun (the data step rebuilds it)"


def _read_jsonl(path: Path, n_labels: int | None = None) -> list[dict]:
    """Subset rows (docs/CONTRACTS.md), each checked: a damaged file is a DataError naming the line."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as err:
                raise DataError(f"{path}:{lineno}: not valid JSON ({err})", hint=_REBUILD) from None
            labels = row.get("labels") if isinstance(row, dict) else None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not isinstance(labels, list) \
                    or not labels or not all(isinstance(j, int) and not isinstance(j, bool) for j in labels):
                raise DataError(f"{path}:{lineno}: expected {{\"text\": str, \"labels\": [label index, ...]}}, "
                                f"got {line.strip()[:80]}", hint=_REBUILD)
            if n_labels is not None and not all(0 <= j < n_labels for j in labels):
                raise DataError(f"{path}:{lineno}: label index {labels} outside the manifest's "
                                f"{n_labels} labels", hint=_REBUILD)
            rows.append(row)
    return rows


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def load_data(data_dir: Path, spec: dict) -> dict:
    manifest = _read_json(data_dir / "manifest.json")
    if manifest is None:
        raise DataError(f"no readable manifest.json in {data_dir}", hint="run `emogrid prepare` for this subset first")
    labels = manifest.get("labels") if isinstance(manifest, dict) else None
    if not isinstance(labels, list) or len(labels) < 2:
        raise DataError(f"{data_dir / 'manifest.json'}: expected a 'labels' list of at least 2 names",
                        hint=_REBUILD)
    out = {"manifest": manifest, "labels": list(labels)}
    for split in ("train", "val", "test"):
        path = data_dir / f"{split}.jsonl"
        if not path.is_file():
            raise DataError(f"missing {path}", hint="run `emogrid prepare` for this subset first")
        out[split] = _read_jsonl(path, len(labels))
        if not out[split]:
            raise DataError(f"{path} is empty", hint="increase samples or check the subset")
    mode = spec["data"]["mode"]
    out["multi_label"] = mode == "multi"
    return out


def encode(tokenizer, rows: list[dict], max_len: int, k: int, multi: bool) -> list[dict]:
    """Tokenise once per cell, unpadded (the collator pads each batch to its own longest)."""
    enc = tokenizer([r["text"] for r in rows], truncation=True, max_length=max_len)
    items = []
    for i, r in enumerate(rows):
        if multi:
            label = [0.0] * k
            for j in r["labels"]:
                label[j] = 1.0
        else:
            label = int(r["labels"][0])
        items.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i], "labels": label})
    return items


def evaluate_split(trainer, dataset, rows, labels, multi, threshold, split):
    import numpy as np

    from emogrid import metrics as M

    # Predict in length order: large eval batches then pad to similar lengths (~3x less work).
    order = np.argsort([len(x["input_ids"]) for x in dataset], kind="stable")
    output = trainer.predict([dataset[i] for i in order], metric_key_prefix=split)
    sorted_logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    logits = np.empty_like(sorted_logits)
    logits[order] = sorted_logits
    result, probs, pred = M.from_logits(logits, [r["labels"] for r in rows], labels, multi, threshold)
    preds = M.pred_lists(pred, multi)
    out_rows = [{"id": r.get("id"), "split": split, "gold": list(r["labels"]), "pred": preds[i],
                 "probs": [round(float(p), 6) for p in probs[i]]} for i, r in enumerate(rows)]
    return result, out_rows


# ---------------------------------------------------------------- checkpoints


def find_checkpoint(ckpt_root: Path, chash: str) -> Path | None:
    """Latest complete checkpoint of this very config, or None (a different config starts over)."""
    if not ckpt_root.is_dir():
        return None
    stamp = _read_json(ckpt_root / "config_hash.json") or {}
    if stamp.get("config_hash") != chash:
        shutil.rmtree(ckpt_root, ignore_errors=True)
        return None
    done = [p for p in ckpt_root.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    if not done:
        return None
    return max(done, key=lambda p: int(p.name.split("-")[-1]))


def _resumed_step(resume: Path | None) -> int:
    return int(resume.name.split("-")[-1]) if resume else 0


def save_adapter(model, tokenizer, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


# ---------------------------------------------------------------- logs, efficiency, provenance


def train_log(history: list[dict]) -> list[dict]:
    rows = []
    for h in history:
        base = {"step": h.get("step"), "epoch": h.get("epoch")}
        if "loss" in h:
            rows.append({**base, "loss": h["loss"], "lr": h.get("learning_rate"),
                         **({"grad_norm": h["grad_norm"]} if "grad_norm" in h else {})})
        elif any(k.startswith("eval_") for k in h):
            rows.append({**base, "eval": {k[5:]: v for k, v in h.items() if k.startswith("eval_")}})
    return rows


def peak_memory() -> dict:
    import torch

    if torch.cuda.is_available():
        return {"peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1), "peak_memory_kind": "cuda"}
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"peak_memory_mb": round(kb / 1024, 1), "peak_memory_kind": "rss"}


def gpu_plan_check(spec: dict, measured=None) -> dict:
    """On CUDA: the cell's planned GPU peak (`emogrid plan`, no margin) next to the measured one
    (max_memory_reserved: what the caching allocator took; the CUDA context comes on top), so the
    report shows how good the estimate that packs cells onto GPUs was. {} on CPU.

    `measured`: MiB reserved (tests); default torch.cuda.max_memory_reserved when CUDA is used."""
    if measured is None:
        import torch

        if not torch.cuda.is_available():
            return {}
        measured = torch.cuda.max_memory_reserved() / 2**20
    try:
        from emogrid.plan import plan_cell_memory

        planned = float(plan_cell_memory(spec)["train_peak_mb"])
    except Exception as err:  # noqa: BLE001 - a planning gap must not fail a trained cell
        log.warning("could not plan this cell's GPU memory for the plan-vs-measured check: %s", err)
        return {"peak_memory_reserved_mb": round(measured, 1)}
    return {"peak_memory_reserved_mb": round(measured, 1), "planned_gpu_mb": round(planned, 1),
            "gpu_plan_ratio": round(measured / planned, 3) if planned else None}


def provenance(spec: dict, data: dict | None, started: str, precision: str | None = None) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("emogrid", "torch", "transformers", "peft", "accelerate", "bitsandbytes", "scikit-learn"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    versions["python"] = sys.version.split()[0]
    device = "cpu"
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            device = torch.cuda.get_device_name(0)
    manifest = (data or {}).get("manifest") or {}
    model = spec.get("model") or {}
    model_source = model.get("source") or {k: model.get(k) for k in ("id", "revision", "path") if model.get(k)}
    return {"versions": versions, "device": device, "precision": precision, "git_commit": git_commit(),
            "model_source": model_source,
            "data_source": {k: v for k, v in (manifest.get("source") or {}).items()
                            if k in ("kind", "id", "config", "revision", "commit", "path")},
            "config_hash": spec.get("config_hash"), "data_checksum": manifest.get("checksum"),
            "hostname": socket.gethostname(), "started": started, "finished": _now()}


def git_commit() -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return res.stdout.strip() or None if res.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _setup_logging(path: Path, main: bool = True) -> None:
    """run.log; under torchrun, ranks other than 0 add only their warnings and errors."""
    log.setLevel(logging.INFO if main else logging.WARNING)
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    fh = logging.FileHandler(path, encoding="utf-8")  # appends: a resumed run continues the log
    prefix = "" if main else f"[rank {os.environ.get('RANK', '?')}] "
    fh.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {prefix}%(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(fh)
    log.propagate = False
