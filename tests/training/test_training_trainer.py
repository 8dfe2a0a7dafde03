"""`emogrid.training.trainer` and `emogrid.training.signals`: the cell trainer's options are
constructor arguments, LoRA+ uses the optimizer its arguments name, and SIGTERM during training
turns into save-and-stop through the stop state the context manager owns (no global flag)."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from conftest_train import cell_spec

from emogrid.training.callbacks import SigtermSave
from emogrid.training.signals import SigtermCheckpoint
from emogrid.training.trainer import CellTrainer


def _args(tmp_path, optim):
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=str(tmp_path / "ckpt"), learning_rate=1e-3, weight_decay=0.01,
                             use_cpu=True, report_to="none", optim=optim)


@pytest.mark.parametrize("optim, expected", [("adamw_torch", "AdamW"), ("adamw_torch_fused", "AdamW"),
                                             ("adamw_bnb_8bit", "AdamW8bit")])
def test_loraplus_uses_the_optimizer_the_arguments_name(tiny_models, tmp_path, optim, expected):
    from emogrid.models.adapters import apply_method
    from emogrid.models.loading import load_model

    spec = cell_spec(tiny_models["llama"], "loraplus")
    model, _, family = load_model(spec, 3)
    model = apply_method(model, spec, family)
    trainer = CellTrainer(model=model, args=_args(tmp_path, optim), loraplus_ratio=16.0)
    optimizer = trainer.create_optimizer()
    assert type(optimizer).__name__ == expected
    assert bool(optimizer.defaults.get("fused")) == (optim == "adamw_torch_fused")  # CUDA's AdamW: fused
    assert sorted({g["lr"] for g in optimizer.param_groups}) == pytest.approx([1e-3, 16e-3])


def test_adamw_is_fused_on_cuda_only():
    """CUDA trains with torch's fused AdamW (one kernel, no state-sized temporaries: the planner
    plans none); the CPU keeps the for-loop AdamW; QLoRA keeps bitsandbytes' 8-bit AdamW."""
    from emogrid.training.arguments import optimizer_name

    assert optimizer_name("adamw", cuda=True) == "adamw_torch_fused"
    assert optimizer_name("adamw", cuda=False) == "adamw_torch"
    assert optimizer_name("adamw_8bit", cuda=True) == optimizer_name("adamw_8bit", cuda=False) == "adamw_bnb_8bit"


def test_options_are_constructor_arguments_with_plain_defaults(tmp_path):
    plain = CellTrainer(model=torch.nn.Linear(2, 2), args=_args(tmp_path, "adamw_torch"))
    assert (plain.loraplus_ratio, plain.length_grouping, plain.length_chunks) == (None, False, 1)
    assert plain.model_accepts_loss_kwargs is False
    set_ = CellTrainer(model=torch.nn.Linear(2, 2), args=_args(tmp_path, "adamw_torch"), loraplus_ratio=4.0,
                       length_grouping=True, length_chunks=3)
    assert (set_.loraplus_ratio, set_.length_grouping, set_.length_chunks) == (4.0, True, 3)


def test_sigterm_inside_the_window_asks_its_own_callback_to_save_and_stop():
    from transformers import TrainerControl

    before = signal.getsignal(signal.SIGTERM)
    stop, other = SigtermCheckpoint(), SigtermCheckpoint()
    callback, bystander = SigtermSave(stop), SigtermSave(other)
    control = TrainerControl()
    callback.on_step_end(None, None, control)
    assert not (control.should_save or control.should_training_stop)  # nothing asked yet
    with stop:
        os.kill(os.getpid(), signal.SIGTERM)  # handled, not fatal: the process lives on
    assert stop.requested and not other.requested  # the request belongs to its own window
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back
    callback.on_step_end(None, None, control)
    assert control.should_save and control.should_training_stop
    control = TrainerControl(should_evaluate=True, should_save=True)
    callback.on_epoch_end(None, None, control)
    assert not (control.should_evaluate or control.should_save)  # a partial epoch is not evaluated
    idle = TrainerControl()
    bystander.on_step_end(None, None, idle)
    assert not (idle.should_save or idle.should_training_stop)
