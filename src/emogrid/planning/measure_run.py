"""Measure one cell's CPU training memory in this fresh process: `python -m emogrid.planning.measure_run
SPEC.json SEQ_LEN STEPS` prints {baseline_mb, peak_rss_mb, model_peak_mb, forward_held_mb} as
JSON (MiB): forward_held_mb is the RSS the last step's forward added, what autograd holds for
backward (the planner's activations).

Run by emogrid.planning.validation.measure_cpu_run; the spec comes in a JSON file, never as code.
"""

from __future__ import annotations

import json
import sys

import psutil

from emogrid.study.spec_sections import TrainRecipe

MIB = 2 ** 20


def measure(spec: dict, seq: int, steps: int) -> dict:
    """Peak RSS of `steps` AdamW steps, and its growth over the RSS after imports. The forward
    runs under CPU autocast when the spec's precision is bf16 (what the Trainer does)."""
    import peft  # noqa: F401 - imports first: the runtime is not the model's memory
    import torch
    import transformers  # noqa: F401

    from emogrid.models.adapters import apply_method
    from emogrid.models.loading import load_model

    torch.manual_seed(0)
    torch.set_num_threads(1)
    proc = psutil.Process()
    base = proc.memory_info().rss
    k = int(spec["cell"]["labels"])
    model, _tok, family = load_model(spec, k)
    model = apply_method(model, spec, family, total_step=1000)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, foreach=False)
    train = TrainRecipe.from_spec(spec)
    b = train.batch_size
    vocab = model.get_input_embeddings().num_embeddings  # a tiny test model has a few hundred tokens
    ids = torch.randint(5, min(1000, vocab), (b, seq))
    labels = torch.randint(0, k, (b,))
    peak = proc.memory_info().rss
    bf16 = train.precision == "bf16"
    held = 0
    for _ in range(steps):
        before = proc.memory_info().rss
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
        held = proc.memory_info().rss - before  # what the graph holds for backward (last step)
        out.loss.backward()
        peak = max(peak, proc.memory_info().rss)
        opt.step()
        opt.zero_grad(set_to_none=True)
        peak = max(peak, proc.memory_info().rss)
    hw = high_water_rss()
    return {"baseline_mb": base / MIB, "peak_rss_mb": max(peak, hw) / MIB,
            "model_peak_mb": (max(peak, hw) - base) / MIB, "forward_held_mb": held / MIB}


def high_water_rss() -> int:
    """This process's peak RSS in bytes (VmHWM), 0 where /proc is missing (the polled peak stands).

    Not getrusage's ru_maxrss: Linux carries it across fork + exec, so a child started by a big
    parent (a long pytest session) reports the parent's RSS as its own peak."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main(argv: list[str]) -> int:
    spec_file, seq, steps = argv
    with open(spec_file, encoding="utf-8") as fh:
        spec = json.load(fh)
    print(json.dumps(measure(spec, int(seq), int(steps))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
