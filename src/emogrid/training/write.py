"""Write a cell's files (docs/CONTRACTS.md): spec.json when it starts; when it finishes metrics.json,
predictions.jsonl, train_log.jsonl and the optional adapter, then drop its checkpoint; `check_outputs` is the
train rule's own check of metrics.json before it declares success.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from emogrid import atomic
from emogrid.study.spec_sections import TrainRecipe
from emogrid.training.fit import CHECKPOINT_DIR

log = logging.getLogger("emogrid.training.train")  # run.log (emogrid.training.train sets up its handler)

# Tests: called right after metrics.json is in place, inside the finishing window (a signal
# sent here must not cost the finished cell).
AFTER_METRICS_HOOK = None


def write_results(spec: dict, out: Path, data: dict, cell, fitted, evaluated, batch: dict, started: str,
                  on_finishing=None) -> dict:
    """metrics.json of the cell (build.BuiltCell, fit.Fitted, evaluate.Evaluated), returned;
    written with the other files by rank 0 only. `on_finishing()` is called just before the
    files are written."""
    from emogrid.training import distributed
    from emogrid.training.efficiency import efficiency
    from emogrid.training.health import training_health
    from emogrid.training.provenance import provenance

    state = fitted.trainer.state
    scores = evaluated.scores
    eff = efficiency(spec, cell, fitted, evaluated, batch)
    health = training_health(state.log_history)
    train = TrainRecipe.from_spec(spec)
    log.info("done: val %s %.4f, test %s; %d optimizer steps (%d this run), %.1f s train; training health %s: %s",
             train.metric, scores["val"].get(train.metric, float("nan")),
             f"accuracy {scores['test']['accuracy']:.4f}" if "test" in scores else "not evaluated (tuning cell)",
             state.global_step, fitted.steps_this_run, fitted.train_seconds, health["state"], health["reason"])
    metrics = {"cell": spec["cell"], "cell_id": spec["cell_id"], "status": "ok",
               **scores, "efficiency": eff, "health": health,
               "provenance": provenance(spec, data, started, fitted.precision)}
    # a tuning cell records its budget; a tuned study cell the values its group chose (emogrid.study.tuning)
    metrics.update({key: spec[key] for key in ("tuning", "tuned") if spec.get(key)})
    if not distributed.is_main():  # under torchrun only rank 0 writes the cell's files
        return metrics
    if train.save_adapter:
        save_adapter(cell.model, cell.tokenizer, out / "adapter")
    if on_finishing is not None:
        on_finishing()
    atomic.write_jsonl(out / "predictions.jsonl", evaluated.predictions)
    atomic.write_jsonl(out / "train_log.jsonl", train_log(state.log_history))
    atomic.write_json(out / "metrics.json", metrics)
    if AFTER_METRICS_HOOK is not None:
        AFTER_METRICS_HOOK(out)
    shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    return metrics


def write_spec(out: Path, spec: dict) -> None:
    """spec.json: the cell's spec before anything machine-local (a fetched snapshot's path) is
    filled in, so two machines' copies of one cell compare equal (docs/CONTRACTS.md)."""
    from emogrid.training.cell_files import SPEC_FILE

    atomic.write_json(out / SPEC_FILE, spec)


def save_adapter(model, tokenizer, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


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


def check_outputs(out: Path, spec: dict) -> None:
    """The train rule's own check before it declares success: metrics.json must pass the
    contract (schema, cell id, config hash) that every reader applies."""
    from emogrid.training import cell_files as results

    res = results.read(out / "metrics.json", "metrics", cell_id=spec["cell_id"],
                       config_hash=spec["config_hash"])
    if not res.valid:
        (out / "metrics.json").unlink(missing_ok=True)
        raise RuntimeError(f"the metrics this cell wrote fail the metrics.json contract "
                           f"(a bug in emogrid): {res.reason}")
