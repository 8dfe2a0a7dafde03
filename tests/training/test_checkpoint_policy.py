"""What a training cell keeps on disk and what its seconds mean (emogrid.training.checkpoint_policy,
emogrid.training.efficiency): one resumable checkpoint plus the best evaluation's weights only, and
training, evaluation and checkpoint seconds recorded apart. Hooks are injected into the save
and evaluation paths (a snapshot of the folder, a jump of a fake clock), never sleeps."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest
from conftest_train import cell_spec
from transformers import Trainer, trainer_callback

from emogrid.study.grid import config_hash
from emogrid.training import evaluate as evaluate_module
from emogrid.training import train

RESUME_ONLY = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here: one torch thread (conftest_train.one_torch_thread)."""


def run_cli(spec: dict, data: Path, out: Path) -> int:
    spec["config_hash"] = config_hash(spec)
    return train.run(argparse.Namespace(spec=json.dumps(spec), data=str(data), out=str(out), attempt=1))


def test_full_finetuning_keeps_one_resumable_checkpoint_and_the_best_as_weights(tiny_models, tiny_subset, tmp_path,
                                                                               monkeypatch):
    """Full fine-tuning, evaluations every 2 steps, the first evaluation the best (the metric is
    made to fall): after every save the folder holds the latest checkpoint (weights + optimizer,
    to resume) and best/ with the first evaluation's weights only; no second checkpoint with its
    optimizer state (HF's rotation kept the best checkpoint whole: 2 x 17.7 GB for Qwen2.5-1.5B).
    The trainer state a resume would read names best/, and the end of training restores it."""
    falling = iter([0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.01])
    real_metrics = evaluate_module.trainer_metrics

    def first_is_best(labels, multi, spec):
        compute = real_metrics(labels, multi, spec)
        return lambda eval_pred: {**compute(eval_pred), "accuracy": next(falling)}

    monkeypatch.setattr(evaluate_module, "trainer_metrics", first_is_best)
    snapshots, loaded_from = [], []
    on_save = trainer_callback.CallbackHandler.on_save

    def snapshot(self, args, state, control):  # right after each checkpoint is saved
        root = Path(args.output_dir)
        best = root / "best"
        latest_state = root / f"checkpoint-{state.global_step}" / "trainer_state.json"
        snapshots.append({"step": state.global_step, "best_step": state.best_global_step,
                          "checkpoints": {p.name: sorted(f.name for f in p.iterdir())
                                          for p in sorted(root.glob("checkpoint-*"))},
                          "best": sorted(f.name for f in best.iterdir()) if best.is_dir() else [],
                          "best_stamp": json.loads((best / "emogrid_best.json").read_text())["step"]
                          if (best / "emogrid_best.json").is_file() else None,
                          "resume_names": json.loads(latest_state.read_text())["best_model_checkpoint"]})
        return on_save(self, args, state, control)

    load_best = Trainer._load_best_model

    def record_load(self):
        loaded_from.append((self.state.best_model_checkpoint, sorted(p.name for p in
                                                                     Path(self.state.best_model_checkpoint).iterdir())))
        return load_best(self)

    monkeypatch.setattr(trainer_callback.CallbackHandler, "on_save", snapshot)
    monkeypatch.setattr(Trainer, "_load_best_model", record_load)
    # 54 training rows / batch 8 = 7 steps per epoch, 1 epoch, evaluations every 2 steps and at the end
    spec = cell_spec(tiny_models["bert"], "full", epochs=1, eval_every="2 steps", patience=0)
    assert run_cli(spec, tiny_subset, tmp_path) == 0
    assert [s["step"] for s in snapshots] == [2, 4, 6, 7]
    for snap in snapshots:
        assert list(snap["checkpoints"]) == [f"checkpoint-{snap['step']}"], snap  # one resumable checkpoint
        assert set(RESUME_ONLY) <= set(snap["checkpoints"][f"checkpoint-{snap['step']}"])
        assert snap["best_step"] == 2 and snap["best_stamp"] == 2, snap
        assert "model.safetensors" in snap["best"] and not set(RESUME_ONLY) & set(snap["best"]), snap
        assert snap["resume_names"].endswith("/best"), snap
    (path, files), = loaded_from
    assert path.endswith(".checkpoint/best") and "model.safetensors" in files
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["efficiency"]["best_step"] == 2 and not (tmp_path / ".checkpoint").exists()


def test_train_seconds_exclude_evaluation_and_checkpoint_saves(tiny_models, tiny_subset, tmp_path, monkeypatch):
    """A fake clock jumps 10^6 s inside each checkpoint save and 10^5 s inside each evaluation in
    the loop: train_seconds stays the training steps' own seconds (it held both before, which
    made full fine-tuning, the method with the heaviest saves, look slower), the saves and the
    evaluations are recorded beside it, and throughput is per training second."""
    offset = [0.0]
    real_clock = time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: real_clock() + offset[0])
    save, evaluate = Trainer._save_checkpoint, Trainer.evaluate
    calls = {"save": 0, "eval": 0}

    def slow_save(self, *args, **kwargs):
        calls["save"] += 1
        offset[0] += 1e6
        return save(self, *args, **kwargs)

    def slow_eval(self, *args, **kwargs):
        calls["eval"] += 1
        offset[0] += 1e5
        return evaluate(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_save_checkpoint", slow_save)
    monkeypatch.setattr(Trainer, "evaluate", slow_eval)
    spec = cell_spec(tiny_models["bert"], "full", epochs=2, patience=0)
    assert run_cli(spec, tiny_subset, tmp_path) == 0
    eff = json.loads((tmp_path / "metrics.json").read_text())["efficiency"]
    assert calls == {"save": 2, "eval": 2}  # once per epoch
    assert eff["checkpoint_seconds"] >= 2e6 and eff["checkpoint_seconds"] < 2e6 + 1e5
    assert eff["eval_seconds"] >= 2e5 and eff["eval_seconds"] < 3e5  # the loop's evaluations + the final one
    assert eff["train_seconds"] < 1e5  # the jumps are not training
    assert eff["train_loop_seconds"] >= 2e6 + 2e5  # the loop as a whole, saves and evaluations included
    assert eff["train_samples_per_second"] == pytest.approx(54 * 2 / eff["train_seconds"], rel=1e-2)
