"""Same instrumentation for both sides of the benchmark, without touching either side's code.

Usage (what bench/run.py spawns):

    python bench/probe.py OUT.json -m emogrid train --spec ... --data ... --out ...
    python bench/probe.py OUT.json bench/baseline.py --spec ... --data ... --out ...

The probe installs an import hook that, once `transformers.trainer` is imported (by
whichever side), wraps a few `Trainer` methods to record wall-clock timestamps:

* `t_train_begin`       entering `Trainer.train` (model built, data tokenised)
* `t_first_step`        the first optimizer step finished (`on_optimizer_step`, step 1)
* `t_train_end`         leaving `Trainer.train` (includes the in-loop evaluations/saves)
* `eval_seconds`        time inside `Trainer.evaluate` + `Trainer.predict` (in-loop and final)
* `save_seconds`        time inside `Trainer._save_checkpoint` (in-loop checkpoints)
* `train_samples`, `train_tokens` (non-pad), `train_padded_tokens`: what `training_step` saw
* `optimizer_steps`

Then it runs the target as `__main__` (runpy), so the target's imports, start-up and exit
are exactly those of a plain `python -m emogrid ...` / `python bench/baseline.py ...`.
The hook itself imports nothing heavy; its cost is one `json.dump` at exit.
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.util
import json
import os
import runpy
import sys
import time

RECORD: dict = {"t_probe_start": time.time(), "eval_seconds": 0.0, "save_seconds": 0.0,
                "eval_calls": 0, "train_samples": 0, "train_tokens": 0, "train_padded_tokens": 0,
                "optimizer_steps": 0, "first_step": None}
_OUT = None
_STATE: dict = {}


def _cpu() -> float:
    t = os.times()  # user + system CPU of this process (all threads)
    return t.user + t.system


def _dump() -> None:
    RECORD["t_exit"] = time.time()
    if _OUT:
        tmp = _OUT + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(RECORD, fh, indent=1)
        os.replace(tmp, _OUT)


def _timed(fn, key):
    def wrapper(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(self, *args, **kwargs)
        finally:
            RECORD[key] += time.perf_counter() - t0
            if key == "eval_seconds":
                RECORD["eval_calls"] += 1

    wrapper.__wrapped__ = fn
    return wrapper


def _patch_trainer(mod) -> None:
    Trainer = mod.Trainer
    train = Trainer.train

    def train_wrapper(self, *args, **kwargs):
        RECORD["t_train_begin"] = time.time()
        RECORD["cpu_train_begin"] = _cpu()
        RECORD["batch_size"] = self.args.per_device_train_batch_size
        RECORD["grad_accum"] = self.args.gradient_accumulation_steps
        eval0 = RECORD["eval_seconds"]
        save0 = RECORD["save_seconds"]
        try:
            return train(self, *args, **kwargs)
        finally:
            RECORD["t_train_end"] = time.time()
            RECORD["cpu_train_end"] = _cpu()
            RECORD["eval_seconds_in_train"] = RECORD["eval_seconds"] - eval0
            RECORD["save_seconds_in_train"] = RECORD["save_seconds"] - save0
            RECORD["optimizer_steps"] = int(self.state.global_step)
            if _STATE.get("mask_acc") is not None:
                RECORD["train_tokens"] += int(_STATE.pop("mask_acc"))
            torch = sys.modules.get("torch")
            if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
                RECORD["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
            _dump()

    Trainer.train = train_wrapper
    Trainer.evaluate = _timed(Trainer.evaluate, "eval_seconds")
    Trainer.predict = _timed(Trainer.predict, "eval_seconds")
    if hasattr(Trainer, "_save_checkpoint"):
        Trainer._save_checkpoint = _timed(Trainer._save_checkpoint, "save_seconds")

    training_step = Trainer.training_step

    def training_step_wrapper(self, model, inputs, *args, **kwargs):
        mask = inputs.get("attention_mask") if hasattr(inputs, "get") else None
        ids = inputs.get("input_ids") if hasattr(inputs, "get") else None
        if ids is not None:
            RECORD["train_samples"] += int(ids.shape[0])
            RECORD["train_padded_tokens"] += int(ids.numel())
            if mask is not None and not mask.is_cuda:
                RECORD["train_tokens"] += int(mask.sum())
            elif mask is not None:  # CUDA: accumulate on the device, read once at the end (no per-step sync)
                acc = _STATE.get("mask_acc")
                _STATE["mask_acc"] = mask.sum() if acc is None else acc + mask.sum()
        return training_step(self, model, inputs, *args, **kwargs)

    Trainer.training_step = training_step_wrapper

    # First optimizer step: the callback handler's event, which both sides' Trainers fire.
    from transformers import trainer_callback

    handler = trainer_callback.CallbackHandler
    on_opt = handler.on_optimizer_step

    def on_optimizer_step(self, args, state, control, *a, **kw):
        if RECORD["first_step"] is None:
            RECORD["first_step"] = time.time()
            RECORD["cpu_first_step"] = _cpu()
        return on_opt(self, args, state, control, *a, **kw)

    handler.on_optimizer_step = on_optimizer_step


class _Finder(importlib.abc.MetaPathFinder):
    """Patch `transformers.trainer` right after it is first executed."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "transformers.trainer":
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch_trainer(module)
            RECORD["t_transformers_trainer_imported"] = time.time()

        loader.exec_module = exec_and_patch
        return spec


def main() -> None:
    global _OUT
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    _OUT = sys.argv[1]
    RECORD["t_spawn"] = float(os.environ.get("BENCH_T_SPAWN", "nan"))
    atexit.register(_dump)
    sys.meta_path.insert(0, _Finder())
    if sys.argv[2] == "-m":
        module = sys.argv[3]
        sys.argv = [module] + sys.argv[4:]
        # as `python -m`: the working directory first on sys.path, not bench/
        sys.path[0] = os.getcwd()
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        script = sys.argv[2]
        sys.argv = [script] + sys.argv[3:]
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
