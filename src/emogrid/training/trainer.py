"""The cell's HF Trainer: `build_trainer` assembles it from the spec (arguments, collator,
callbacks, metrics); `CellTrainer` adds LoRA+ optimizer groups, length-grouped batches,
length-chunked forwards, exact loss scaling under accumulation, AdaLoRA-safe checkpoints, the
checkpoint policy (`checkpoint_policy`: one resumable checkpoint, the best as weights only) and
the seconds its evaluations and checkpoint saves take inside the training loop.
"""

from __future__ import annotations

from pathlib import Path

from transformers import Trainer

from emogrid.study.spec_sections import MethodSpec, TrainRecipe


def build_trainer(spec, model, tokenizer, sets, ckpt_dir: Path, batch, labels, multi, steps_per_epoch, stop):
    """(CellTrainer, precision) of a cell; `stop` is the `signals.SigtermCheckpoint` its
    SigtermSave callback reads."""
    import torch
    from transformers import DataCollatorWithPadding, EarlyStoppingCallback, PrinterCallback

    from emogrid.models.devices import single_process_n_gpu
    from emogrid.training import distributed, tracking
    from emogrid.training.arguments import precision_of, training_arguments
    from emogrid.training.callbacks import AdaLoraStep, ProgressLog, SigtermSave
    from emogrid.training.cell_data import PadCollator
    from emogrid.training.evaluate import trainer_metrics

    tracked = tracking.setup(spec, Path(ckpt_dir).parent)  # live curves: train.report_to
    train = TrainRecipe.from_spec(spec)
    precision = precision_of(spec)
    cuda = torch.cuda.is_available()
    args = training_arguments(spec, ckpt_dir, batch, steps_per_epoch, precision=precision, cuda=cuda,
                              processes=distributed.world_size(), report_to=tracked["report_to"],
                              run_name=tracked["run_name"])
    single_process_n_gpu(args)  # never nn.DataParallel: one process, one GPU (or DDP via torchrun)
    # patience 0 = off: no callback at all (transformers stops when counter >= patience, so a
    # callback with patience 0 would stop at the first evaluation). The best evaluation is still
    # restored at the end (load_best_model_at_end), with or without early stopping.
    patience = train.patience
    early_stop = [EarlyStoppingCallback(early_stopping_patience=patience)] if patience > 0 else []
    adalora = [AdaLoraStep()] if MethodSpec.from_spec(spec).peft == "adalora" else []
    callbacks = [*early_stop, ProgressLog(), SigtermSave(stop), *adalora, *tracked["callbacks"]]
    collator = PadCollator(DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if cuda else None), multi)
    val_sorted = sorted(sets["val"], key=lambda x: len(x["input_ids"]))  # metrics ignore order
    trainer = CellTrainer(model=model, args=args, train_dataset=sets["train"], eval_dataset=val_sorted,
                          data_collator=collator, compute_metrics=trainer_metrics(labels, multi, spec),
                          callbacks=callbacks, loraplus_ratio=MethodSpec.from_spec(spec).loraplus_ratio,
                          length_grouping=train.length_grouping, length_chunks=1 if cuda else 4)
    trainer.remove_callback(PrinterCallback)  # run.log has the progress; stdout stays quiet
    return trainer, precision


class CellTrainer(Trainer):
    """Trainer with LoRA+ (B matrices at ratio x lr, emogrid.training.loraplus; 8-bit when the arguments'
    optimizer is), length grouping and chunking.

    `loraplus_ratio`: LoRA+'s lr ratio, None for no LoRA+. `length_grouping`: length-grouped
    training batches (emogrid.training.sampling). `length_chunks` > 1: forward each training batch as
    that many length-sorted chunks (emogrid.training.chunking)."""

    # Every head returns the micro-batch's *mean* loss and ignores `num_items_in_batch`, but
    # their forward takes **kwargs, so the Trainer would assume the loss is already normalised
    # for accumulation and skip `loss / grad_accum`: 8x2 would train with twice the gradient of
    # 16x1 (and clip differently). Divide by the accumulation steps, always.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, loraplus_ratio: float | None = None, length_grouping: bool = False,
                 length_chunks: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.loraplus_ratio = loraplus_ratio
        self.length_grouping = length_grouping
        self.length_chunks = length_chunks
        # Never pass num_items_in_batch to the model (the heads ignore it) nor multiply the loss
        # by the number of processes under DDP (`average_tokens_across_devices` assumes a sum).
        self.model_accepts_loss_kwargs = False
        # seconds inside train(): evaluations and checkpoint saves (fit: the rest is training)
        self.phase_seconds = {"eval": 0.0, "checkpoint": 0.0}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.length_chunks > 1 and model.training and not return_outputs:
            from emogrid.training.chunking import split_by_length

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
    # (evaluate: the validations inside the loop; the final val/test predictions are timed by
    # emogrid.training.evaluate.)
    def evaluate(self, *args, **kwargs):
        with _phase("eval"), _Stopwatch(self.phase_seconds, "eval"):
            return super().evaluate(*args, **kwargs)

    def predict(self, *args, **kwargs):
        with _phase("eval"):
            return super().predict(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        """Length-grouped batches (emogrid.training.sampling): far less padding with dynamic padding.

        Grouped by the effective batch (micro-batch x accumulation), so an OOM retry that halves
        the micro-batch still puts the same examples in each optimizer step."""
        if not self.length_grouping:
            return super()._get_train_sampler(train_dataset)
        from emogrid.training.sampling import LengthGroupedSampler

        ds = train_dataset if train_dataset is not None else self.train_dataset
        return LengthGroupedSampler([len(x["input_ids"]) for x in ds],
                                    self.args.train_batch_size * self.args.gradient_accumulation_steps
                                    * self.args.world_size,
                                    self.args.data_seed if self.args.data_seed is not None else self.args.seed)

    def create_optimizer(self, *args, **kwargs):
        if self.optimizer is None and self.loraplus_ratio:
            import torch
            from transformers.training_args import OptimizerNames

            from emogrid.training import loraplus

            # the optimizer the arguments name (training_arguments: from the spec's train.optim)
            extra = {}
            if self.args.optim == OptimizerNames.ADAMW_BNB:
                import bitsandbytes as bnb

                cls = bnb.optim.AdamW8bit
            else:
                cls = torch.optim.AdamW
                if self.args.optim == OptimizerNames.ADAMW_TORCH_FUSED:
                    extra["fused"] = True
            # emogrid's groups, not peft's create_loraplus_optimizer (which drops weight decay)
            self.optimizer = loraplus.create_optimizer(
                self.model, cls, lr=self.args.learning_rate, ratio=float(self.loraplus_ratio),
                weight_decay=self.args.weight_decay, decay_names=self.get_decay_parameter_names(self.model),
                **extra)
            return self.optimizer
        return super().create_optimizer(*args, **kwargs)

    # AdaLoRA saves adapters pruned to its current rank pattern and resizes the live modules to
    # the live pattern on load, so a checkpoint from an earlier allocation cannot be loaded back
    # (best model, resume). Checkpoints are saved and loaded unpruned instead: masked ranks are
    # zeros in lora_E, so nothing is lost.
    def _save(self, *args, **kwargs):
        with _unpruned(self.model):
            return super()._save(*args, **kwargs)

    def _save_checkpoint(self, model, trial):
        """HF's checkpoint (weights, optimizer, scheduler, RNG, trainer state), then the policy:
        the best evaluation's weights in <checkpoints>/best, every older checkpoint deleted."""
        from emogrid.training.checkpoint_policy import keep_latest_and_best_weights

        with _Stopwatch(self.phase_seconds, "checkpoint"):
            super()._save_checkpoint(model, trial)
            keep_latest_and_best_weights(self)

    def _load_best_model(self, *args, **kwargs):
        with _unpruned(self.model):
            return super()._load_best_model(*args, **kwargs)

    def _load_from_checkpoint(self, *args, **kwargs):
        with _unpruned(self.model):
            return super()._load_from_checkpoint(*args, **kwargs)


class _Stopwatch:
    """Adds the seconds spent inside to `seconds[key]` (CUDA work queued before and inside is
    waited for, so a phase is not charged for the training step before it)."""

    def __init__(self, seconds: dict, key: str):
        self.seconds, self.key = seconds, key

    def _sync(self):
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    def __enter__(self):
        import time

        self._sync()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb):
        import time

        if exc is None:  # after a CUDA error a sync would only raise again
            self._sync()
        self.seconds[self.key] += time.perf_counter() - self.t0
        return False


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
