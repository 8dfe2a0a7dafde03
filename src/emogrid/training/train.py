"""`emogrid train`: train and evaluate one grid cell, write metrics.json (docs/CONTRACTS.md).

Flow (`run_cell`, the steps in `emogrid.training`): spec + data -> model (+ adapter) -> HF
Trainer (dynamic padding, eval every `train.eval_every` for early stopping, checkpoints in
<out>/.checkpoint for resume) -> val/test predictions -> metrics.json, predictions.jsonl,
train_log.jsonl. Any failure leaves failure.json (not a Snakemake output) and a one-paragraph
message; a retry reads it to skip hopeless retries and to halve the micro-batch after CUDA OOM.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path

from emogrid.errors import CellError, EmogridError
from emogrid.study.spec_sections import TrainRecipe
from emogrid.training.build import build_cell
from emogrid.training.cell_data import load_data
from emogrid.training.evaluate import evaluate
from emogrid.training.failures import (
    clear_rank_outcomes,
    describe_failure,
    merge_rank_outcomes,
    plan_attempt,
    write_failure,
    write_preempted,
)
from emogrid.training.fit import CHECKPOINT_DIR, fit
from emogrid.training.provenance import now
from emogrid.training.signals import Preempted, finishing
from emogrid.training.write import check_outputs, write_results, write_spec

log = logging.getLogger("emogrid.training.train")


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
                        "fine-tuning on CUDA), train.batch_size split over them (emogrid.training.distributed)")


def _relaunch_argv(args) -> list[str]:
    argv = ["--spec", args.spec, "--data", str(args.data), "--out", str(args.out),
            "--attempt", str(args.attempt), "--processes", str(args.processes)]
    if getattr(args, "fetched", ""):
        argv += ["--fetched", args.fetched]
    return argv


def run(args) -> int:
    from emogrid.models.devices import cpu_threads
    from emogrid.training import cell_files as results
    from emogrid.training import distributed

    processes = int(getattr(args, "processes", 1) or 1)
    if processes > 1 and distributed.world_size() == 1:  # the launcher: N copies of this command
        Path(args.out).mkdir(parents=True, exist_ok=True)
        problem = distributed.device_problem(processes)
        if problem:  # at once, not N processes that each find no GPU (or train on the CPU)
            return _refuse(args, problem, hint=(
                f"run it where {processes} GPUs are visible (a GPU node, or `--resources gpu=N` on a "
                f"workstation), lower resources.train.gpu, or set {distributed.CPU_PROCESSES_VAR}=1 to run "
                f"{processes} CPU processes (tests)"))
        clear_rank_outcomes(Path(args.out))
        started = now()
        rc, signalled = distributed.launch(_relaunch_argv(args), processes, cpu_threads())
        return settle_launch(args, rc, signalled, started)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _setup_logging(out / "run.log", main=distributed.is_main())
    started = now()
    from emogrid.models.devices import pin_visible_devices

    pinned = pin_visible_devices()  # before anything initialises CUDA
    if pinned:
        log.warning(pinned)
        print(f"emogrid train: {pinned}", file=sys.stderr)
    spec: dict = {}
    batch = {}
    try:
        from emogrid.models.devices import cap_gpu_memory

        capped = cap_gpu_memory()  # a packed cell keeps to its share of the GPU
        if capped:
            log.info(capped)
        if distributed.is_main():  # `emogrid status`: running while this process lives, else interrupted
            results.claim(out)
        spec = load_spec(args.spec)
        if distributed.is_main():  # the spec as the study gave it, hashed (emogrid diff / publish read it)
            write_spec(out, spec)
        if getattr(args, "fetched", ""):
            use_fetched_model(spec, args.fetched)
        batch = plan_attempt(spec, out, int(args.attempt), processes=distributed.world_size())
        with finishing() as window:
            run_cell(spec, Path(args.data), out, batch, started, on_finishing=window)
            if distributed.is_main():  # only rank 0 writes the cell's files
                check_outputs(out, spec)
                (out / "failure.json").unlink(missing_ok=True)
        if window.signals:
            log.info("signal %s arrived after the results were written: the cell is finished",
                     ", ".join(map(str, window.signals)))
        return 0
    except (KeyboardInterrupt, Preempted) as err:  # the checkpoint stays for the resume
        write_preempted(out)
        log.error("interrupted; the next run resumes from the last checkpoint")
        print(f"emogrid train: interrupted; rerun to resume from {out / CHECKPOINT_DIR}", file=sys.stderr)
        return 143 if isinstance(err, Preempted) else 130
    except BaseException as err:  # noqa: BLE001 - every failure must leave a record
        info = describe_failure(err, batch)
        if not isinstance(err, EmogridError):
            log.error("traceback:\n%s", traceback.format_exc())
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


def settle_launch(args, rc: int, signalled: bool, started: str) -> int:
    """The launcher's exit once torchrun has returned: the ranks' outcomes merged into the cell's
    one failure.json (an OOM on any rank decides, so the retry halves the batch), 143 when the
    ranks stopped on SIGTERM with their checkpoint saved, 0 when the cell finished."""
    out = Path(args.out)
    merged = merge_rank_outcomes(out)
    clear_rank_outcomes(out)
    if rc == 0:
        return 0
    failure = merged["failure"]
    if failure is None and (merged["preempted"] or signalled):
        print(f"emogrid train: interrupted; rerun to resume from {out / CHECKPOINT_DIR}", file=sys.stderr)
        return 143
    if failure is None:  # every rank was killed before it could say why (OOM killer, NCCL abort)
        try:
            spec = load_spec(args.spec)
        except EmogridError:
            spec = {}
        info = {"type": "WorkerExit", "retryable": True,
                "message": f"torchrun exited with code {rc} and no process left a record",
                "hint": "a process was killed from outside (host out of memory, a node fault); see run.log"}
        batch = TrainRecipe.from_spec(spec).batch if spec else {}
        write_failure(out, spec, info, batch, int(args.attempt), started)
        return 1
    import emogrid.atomic as atomic

    atomic.write_json(out / "failure.json", failure)
    err = failure.get("error") or {}
    print(f"emogrid train: cell {failure.get('cell_id', '?')} failed on rank {failure['rank']} "
          f"(ranks: {failure['ranks']}): {err.get('type')}: {err.get('message')}", file=sys.stderr)
    return 1 if err.get("retryable", True) else 2


def _refuse(args, problem: str, hint: str) -> int:
    """A cell this machine cannot run: failure.json (not retryable), run.log and one message."""
    out = Path(args.out)
    _setup_logging(out / "run.log")
    started = now()
    try:
        spec = load_spec(args.spec)
    except EmogridError:
        spec = {}
    info = {"type": "CellError", "retryable": False, "message": problem, "hint": hint}
    write_failure(out, spec, info, {}, int(args.attempt), started)
    msg = f"emogrid train: cell {spec.get('cell_id', '?')} failed: {problem} -- what to do: {hint}"
    log.error(msg)
    print(msg, file=sys.stderr)
    return 2


def load_spec(arg: str) -> dict:
    try:
        text = Path(arg[1:]).read_text(encoding="utf-8") if arg.startswith("@") else arg
        spec = json.loads(text)
    except (OSError, json.JSONDecodeError) as err:
        raise CellError(f"cannot read the cell spec: {err}", hint="pass --spec as JSON or @path/to/spec.json") from err
    if not isinstance(spec, dict):
        raise CellError(f"the cell spec is a JSON {type(spec).__name__}, expected an object",
                        hint="pass --spec as JSON or @path/to/spec.json")
    from emogrid.study.grid import check_spec, config_hash

    check_spec(spec)  # complete: the trainer reads every key strictly, never with a default of its own
    pending = (spec.get("tuned") or {}).get("pending") if isinstance(spec.get("tuned"), dict) else None
    if pending:  # a tuned study cell before its group's choice exists (emogrid.study.tuning.Tuning.final)
        raise CellError(f"this cell takes its tuned values from {pending}, which does not exist yet",
                        hint="run the tuning first (snakemake runs it before the study's cells)")
    spec.setdefault("config_hash", config_hash(spec))  # optional: a hand-written spec is hashed here
    return spec


def use_fetched_model(spec: dict, receipt_file: str) -> None:
    """Point the spec at the fetched snapshot; provenance records the exact commit.
    (After hashing: where the files lie is not part of what the cell computes.)"""
    from emogrid.data.fetch import describe, read_receipt

    receipt = read_receipt(receipt_file)
    spec["model"]["path"] = receipt["snapshot"]
    spec["model"]["source"] = describe(receipt)


# ---------------------------------------------------------------- the cell


def run_cell(spec: dict, data_dir: Path, out: Path, batch: dict, started: str, on_model=None,
             on_finishing=None) -> dict:
    """Train + evaluate one cell, write its files (rank 0), return its metrics.json.

    `on_model(model)` sees the model before training (tests); `on_finishing()` is called just
    before the results are written (emogrid train defers signals from there on)."""
    data = load_data(data_dir, spec)
    cell = build_cell(spec, data, batch, on_model=on_model)
    fitted = fit(spec, cell, out, batch)
    evaluated = evaluate(spec, fitted.trainer, cell, data)
    return write_results(spec, out, data, cell, fitted, evaluated, batch, started, on_finishing=on_finishing)


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
