"""Build a cell's model: seed and threads set, the model loaded (`emogrid.models.loading`), the method
applied (`emogrid.models.adapters`), its parameters counted, and the subset tokenised for it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from emogrid.study.spec_sections import MethodSpec, TrainRecipe
from emogrid.training.arguments import optimizer_steps
from emogrid.training.cell_data import encode

log = logging.getLogger("emogrid.training.train")  # run.log (emogrid.training.train sets up its handler)


@dataclass
class BuiltCell:
    """A model ready to train and the cell's tokenised splits."""

    model: object
    tokenizer: object
    family: str
    labels: list[str]
    multi: bool
    sets: dict[str, list[dict]]  # split -> encoded rows (cell_data.encode)
    steps_per_epoch: int  # optimizer steps per epoch, counted as the Trainer counts them
    trainable: int
    total: int


def build_cell(spec: dict, data: dict, batch: dict, on_model=None) -> BuiltCell:
    """The model (+ adapter) and tokenised splits of a cell; `on_model(model)` sees the model
    before training (tests)."""
    _seed_and_threads(spec)
    from emogrid.models.adapters import apply_method, count_parameters
    from emogrid.models.loading import load_model, upcast_trainable

    multi = data["multi_label"]
    labels = data["labels"]
    log.info("cell %s: %s / %s, %d labels, train %d val %d test %s, micro-batch %d x accum %d",
             spec["cell_id"], spec["model"]["name"], MethodSpec.from_spec(spec).name, len(labels),
             len(data["train"]), len(data["val"]), len(data["test"]) if "test" in data else "not read (tuning)",
             batch["batch_size"], batch["grad_accum"])
    if MethodSpec.from_spec(spec).quantize == "int8":
        from emogrid.models.devices import quiet_int8_casts

        quiet_int8_casts()  # bitsandbytes warns on every int8 matmul input on CUDA: once is enough
    import torch

    from emogrid.training import distributed

    # FSDP: ranks other than 0 hold no weights until rank 0 broadcasts them (distributed.loads_on_meta)
    on_meta = distributed.loads_on_meta(spec, torch.cuda.is_available())
    model, tokenizer, family = load_model(spec, len(labels), multi_label=multi, labels=labels, on_meta=on_meta)
    # The Trainer's own count (AdaLoRA's schedule must end on the last real step).
    steps_per_epoch = math.ceil(math.ceil(len(data["train"]) / batch["batch_size"]) / batch["grad_accum"])
    total_steps = optimizer_steps(spec, steps_per_epoch)  # train.max_steps, else the epochs' steps
    model = apply_method(model, spec, family, total_step=total_steps)
    upcast_trainable(model)
    trainable, total = count_parameters(model)
    if on_model is not None:
        on_model(model)
    log.info("family %s, parameters: %d trainable of %d (%.3f%%)", family, trainable, total, 100 * trainable / total)

    max_len = TrainRecipe.from_spec(spec).max_length
    sets = {name: encode(tokenizer, rows, max_len, len(labels), multi) for name, rows in data.items()
            if name in ("train", "val", "test")}
    return BuiltCell(model=model, tokenizer=tokenizer, family=family, labels=labels, multi=multi, sets=sets,
                     steps_per_epoch=steps_per_epoch, trainable=trainable, total=total)


def _seed_and_threads(spec: dict) -> None:
    """Quiet transformers, seed everything, deterministic kernels on CPU, TF32 on CUDA, and the
    job's share of CPU threads."""
    import torch
    from transformers import set_seed
    from transformers.utils import logging as hf_logging

    from emogrid.models.devices import cpu_threads

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    set_seed(int(spec["cell"]["seed"]))
    if not torch.cuda.is_available():
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:  # fp32 matmuls (fp32 precision, fp32 adapter/head weights) on tensor cores: TF32
        torch.set_float32_matmul_precision("high")
    torch.set_num_threads(cpu_threads())
