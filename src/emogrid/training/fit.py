"""Fit a built cell: the Trainer run, resumed from the last checkpoint of the same config
(in <out>/.checkpoint), saved and stopped on SIGTERM (`Preempted`), and refused when it ran
no optimizer step.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from emogrid import atomic
from emogrid.errors import CellError
from emogrid.training.cell_data import read_json
from emogrid.training.signals import Preempted, SigtermCheckpoint

CHECKPOINT_DIR = ".checkpoint"
log = logging.getLogger("emogrid.training.train")  # run.log (emogrid.training.train sets up its handler)


@dataclass
class Fitted:
    """A trained cell: its trainer (state, best model loaded) and how the run went."""

    trainer: object
    precision: str  # what it trained in: fp32 / bf16 / fp16
    train_seconds: float
    resumed_from_step: int  # 0 for a fresh start
    steps_this_run: int


def fit(spec: dict, cell, out: Path, batch: dict) -> Fitted:
    """Train `cell` (build.BuiltCell) with this attempt's batches; checkpoints in <out>/.checkpoint."""
    import torch

    from emogrid.training import distributed
    from emogrid.training.trainer import build_trainer

    ckpt_dir = out / CHECKPOINT_DIR
    resume = find_checkpoint(ckpt_dir, spec["config_hash"])
    stop = SigtermCheckpoint()
    trainer, precision = build_trainer(spec, cell.model, cell.tokenizer, cell.sets, ckpt_dir, batch,
                                       cell.labels, cell.multi, cell.steps_per_epoch, stop)
    ckpt_dir.mkdir(exist_ok=True)
    if distributed.is_main():
        atomic.write_json(ckpt_dir / "config_hash.json", {"config_hash": spec["config_hash"]})
    if resume:
        log.info("resuming from %s", resume)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with stop:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if stop.requested:
        log.error("SIGTERM: checkpoint saved at step %d; the next run resumes from it", trainer.state.global_step)
        raise Preempted
    train_seconds = time.perf_counter() - t0
    if int(trainer.state.global_step) == 0:  # never report an untrained model as a result
        raise CellError("the cell ran zero optimizer steps",
                        hint="check train.epochs (>= 1), train.batch_size and the subset size")
    resumed = _resumed_step(resume)
    return Fitted(trainer=trainer, precision=precision, train_seconds=train_seconds, resumed_from_step=resumed,
                  steps_this_run=trainer.state.global_step - resumed)


def find_checkpoint(ckpt_root: Path, chash: str) -> Path | None:
    """Latest complete checkpoint of this very config, or None (a different config starts over)."""
    if not ckpt_root.is_dir():
        return None
    stamp = read_json(ckpt_root / "config_hash.json") or {}
    if stamp.get("config_hash") != chash:
        shutil.rmtree(ckpt_root, ignore_errors=True)
        return None
    done = [p for p in ckpt_root.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    if not done:
        return None
    return max(done, key=lambda p: int(p.name.split("-")[-1]))


def _resumed_step(resume: Path | None) -> int:
    return int(resume.name.split("-")[-1]) if resume else 0
