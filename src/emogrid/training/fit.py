"""Fit a built cell: the Trainer run, resumed from the last checkpoint of the same config
(in <out>/.checkpoint), saved and stopped on SIGTERM (`Preempted`), and refused when it ran
no optimizer step -- unless its method trains nothing (`untrained`: evaluated as loaded). Its
seconds are split: training steps, the evaluations inside the loop, and checkpoint saves
(`trainer.CellTrainer` times the last two).

Under torchrun only rank 0 inspects, discards and stamps the checkpoint folder; the other
ranks look for the checkpoint to resume from after a barrier, so all of them resume from the
same one and none deletes what rank 0 has just written.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from emogrid import atomic
from emogrid.errors import CellError
from emogrid.study.methods import trains
from emogrid.study.spec_sections import MethodSpec
from emogrid.training.cell_data import read_json
from emogrid.training.signals import Preempted, SigtermCheckpoint

CHECKPOINT_DIR = ".checkpoint"
log = logging.getLogger("emogrid.training.train")  # run.log (emogrid.training.train sets up its handler)


@dataclass
class Fitted:
    """A trained cell: its trainer (state, best model loaded) and how the run went."""

    trainer: object
    precision: str  # what it trained in: fp32 / bf16 / fp16
    train_seconds: float  # the training steps only: the loop minus its evaluations and checkpoint saves
    resumed_from_step: int  # 0 for a fresh start
    steps_this_run: int
    loop_seconds: float = 0.0  # Trainer.train as a whole
    eval_seconds: float = 0.0  # the evaluations inside the loop (early stopping, best model)
    checkpoint_seconds: float = 0.0  # checkpoint saves inside the loop


def fit(spec: dict, cell, out: Path, batch: dict) -> Fitted:
    """Train `cell` (build.BuiltCell) with this attempt's batches; checkpoints in <out>/.checkpoint."""
    import torch

    from emogrid.training import distributed
    from emogrid.training.trainer import build_trainer

    ckpt_dir = out / CHECKPOINT_DIR
    stop = SigtermCheckpoint()
    # the Trainer first: under torchrun it starts the process group the barrier below needs
    trainer, precision = build_trainer(spec, cell.model, cell.tokenizer, cell.sets, ckpt_dir, batch,
                                       cell.labels, cell.multi, cell.steps_per_epoch, stop)
    if not trains(MethodSpec.from_spec(spec).peft):
        # the `untrained` baseline: evaluated as loaded, its zero steps are the point
        log.info("method %s trains nothing: evaluating the model as loaded", MethodSpec.from_spec(spec).name)
        return Fitted(trainer=trainer, precision=precision, train_seconds=0.0, resumed_from_step=0,
                      steps_this_run=0)
    resume = None
    if distributed.is_main():  # rank 0 alone discards another config's checkpoints and stamps this one's
        resume = find_checkpoint(ckpt_dir, spec["config_hash"])
        ckpt_dir.mkdir(exist_ok=True)
        atomic.write_json(ckpt_dir / "config_hash.json", {"config_hash": spec["config_hash"]})
    distributed.barrier()
    if not distributed.is_main():  # read only, after rank 0 is done with the folder
        resume = find_checkpoint(ckpt_dir, spec["config_hash"])
    if resume:
        log.info("resuming from %s", resume)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with stop:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        # A SIGTERM after the last step end reached some ranks only: agree once more, so that all
        # of them stop (or none does) before the evaluation's collectives.
        preempted = stop.agreed()
    if preempted:
        log.error("SIGTERM: checkpoint saved at step %d; the next run resumes from it", trainer.state.global_step)
        raise Preempted
    loop_seconds = time.perf_counter() - t0
    if int(trainer.state.global_step) == 0:  # never report an untrained model as a result
        raise CellError("the cell ran zero optimizer steps",
                        hint="check train.epochs (>= 1), train.batch_size and the subset size")
    resumed = _resumed_step(resume)
    inner = getattr(trainer, "phase_seconds", {})
    eval_s, ckpt_s = float(inner.get("eval", 0.0)), float(inner.get("checkpoint", 0.0))
    return Fitted(trainer=trainer, precision=precision, train_seconds=max(loop_seconds - eval_s - ckpt_s, 0.0),
                  resumed_from_step=resumed, steps_this_run=trainer.state.global_step - resumed,
                  loop_seconds=loop_seconds, eval_seconds=eval_s, checkpoint_seconds=ckpt_s)


def find_checkpoint(ckpt_root: Path, chash: str) -> Path | None:
    """Latest complete checkpoint of this very config, or None (a different config starts over:
    rank 0 deletes its checkpoints; under torchrun the other ranks never delete anything)."""
    from emogrid.training import distributed

    if not ckpt_root.is_dir():
        return None
    stamp = read_json(ckpt_root / "config_hash.json") or {}
    if stamp.get("config_hash") != chash:
        if distributed.is_main():
            shutil.rmtree(ckpt_root, ignore_errors=True)
        return None
    done = [p for p in ckpt_root.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    if not done:
        return None
    return max(done, key=lambda p: int(p.name.split("-")[-1]))


def _resumed_step(resume: Path | None) -> int:
    return int(resume.name.split("-")[-1]) if resume else 0
