"""What a cell keeps on disk while it trains (<out>/.checkpoint, deleted when the cell finishes):

* one resumable checkpoint, the latest (`checkpoint-<step>`: weights, optimizer and scheduler
  state, RNG, trainer state), for the resume after a preemption or a crash;
* the best evaluation's weights only, in `best/` (what `load_best_model_at_end` restores at the
  end): hard links to the files of the checkpoint it came from, so while the best is the latest
  it costs no disk, and no optimizer state is kept for it.

HF's own rotation (`save_total_limit=1` with `load_best_model_at_end`) keeps the best checkpoint
*with* its optimizer state next to the latest (for full fine-tuning of Qwen2.5-1.5B two
checkpoints of 17.7 GB, weights + AdamW, instead of one plus 6.2 GB of weights), and at the end
of training deletes every checkpoint but the best one, the one a SIGTERM stop just saved
included. So the arguments set no `save_total_limit` and this module rotates.
`emogrid.planning.checkpoints` plans the disk this takes.

Rank 0 alone touches the files; every rank points its trainer state at `best/` (they all load the
best weights at the end, after HF's barrier).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger("emogrid.training.train")  # run.log (emogrid.training.train sets up its handler)

BEST_DIR = "best"
BEST_STAMP = "emogrid_best.json"
# what only a resume needs: never part of the best model's weights
_RESUME_ONLY = re.compile(r"^(optimizer|scheduler|scaler|rng_state|trainer_state\.json|training_args\.bin)")


def checkpoint_step(path: Path) -> int | None:
    match = re.fullmatch(r"checkpoint-(\d+)", path.name)
    return int(match.group(1)) if match else None


def keep_latest_and_best_weights(trainer) -> None:
    """After HF saved checkpoint-<global_step>: refresh best/ when this step is the best (or when
    best/ lags behind the best step's checkpoint after a crash), point the trainer state at
    best/, and delete every other checkpoint."""
    state = trainer.state
    run_dir = Path(trainer.args.output_dir)
    best_step = state.best_global_step  # None until an evaluation (a SIGTERM save can come first)
    best = run_dir / BEST_DIR
    main = trainer.args.should_save
    latest = run_dir / f"checkpoint-{state.global_step}"
    if best_step:
        if main:
            source = run_dir / f"checkpoint-{best_step}"
            if _best_step(best) != best_step and source.is_dir():
                _link_weights(source, best, best_step)
        state.best_model_checkpoint = str(best)
        if main and latest.is_dir():  # the trainer state a resume reads names best/, not a deleted checkpoint
            state.save_to_json(str(latest / "trainer_state.json"))
    if not main:
        return
    for path in run_dir.glob("checkpoint-*"):
        if path.is_dir() and path != latest and checkpoint_step(path) is not None:
            shutil.rmtree(path, ignore_errors=True)


def _best_step(best: Path) -> int | None:
    try:
        return int(json.loads((best / BEST_STAMP).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _link_weights(source: Path, best: Path, step: int) -> None:
    """best/ := the weights files of `source` (hard links; a copy where links are refused),
    replaced as a whole (a crash leaves the old best/ or the new one, plus a stray .tmp)."""
    tmp = best.with_name(f".{best.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for item in source.iterdir():
        if _RESUME_ONLY.match(item.name):
            continue
        if item.is_dir():
            shutil.copytree(item, tmp / item.name, copy_function=_link_or_copy)
        else:
            _link_or_copy(item, tmp / item.name)
    (tmp / BEST_STAMP).write_text(json.dumps({"step": step}))
    shutil.rmtree(best, ignore_errors=True)
    os.replace(tmp, best)
    log.info("best evaluation so far at step %d: its weights kept in %s", step, best)


def _link_or_copy(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
