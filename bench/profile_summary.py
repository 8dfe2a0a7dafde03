"""Where a cell's time goes: summarise a py-spy `--format raw` profile of one `emogrid train` run.

    py-spy record -r 50 --format raw -o prof.txt -- python -m emogrid train --spec @S --data D --out O
    python bench/profile_summary.py prof.txt

Each sample is attributed to the first phase (in the order below) whose marker appears in its
stack, from the outermost frame in; samples are wall-clock samples of the main thread (idle
included), so the shares are shares of the process's life.
"""

from __future__ import annotations

import collections
import sys

# (phase, markers): a marker is a substring of one py-spy frame "function (file:line)".
PHASES = [
    ("import (module top-level, before main)", ["<module> (emogrid/training/train.py", "_find_and_load"]),
    ("load data (jsonl)", ["load_data (emogrid/training/cell_data.py"]),
    ("load model + tokenizer", ["load_model (emogrid/models/loading.py"]),
    ("apply method (peft wrap)", ["apply_method (emogrid/models/adapters.py"]),
    ("tokenise", ["encode (emogrid/training/cell_data.py"]),
    ("build Trainer", ["build_trainer (emogrid/training/trainer.py"]),
    ("per-epoch evaluation", ["evaluate (transformers/trainer.py"]),
    ("checkpoint save", ["_save_checkpoint (transformers/trainer.py"]),
    ("load best model at end", ["_load_best_model (transformers/trainer.py"]),
    ("train: optimizer step", ["step (torch/optim/", "optimizer_step", "_foreach_", "adamw (torch/optim"]),
    ("train: backward", ["backward (torch/_tensor.py", "backward (accelerate/", "_engine_run_backward"]),
    ("train: forward", ["training_step (transformers/trainer.py"]),
    ("train: dataloader/collate", ["__next__ (torch/utils/data", "PadCollator", "DataCollatorWithPadding"]),
    ("train: grad clip", ["clip_grad_norm"]),
    ("train: other loop overhead", ["_inner_training_loop (transformers/trainer.py"]),
    ("Trainer.train setup", ["train (transformers/trainer.py"]),
    ("final val/test predict", ["evaluate_split (emogrid/training/evaluate.py", "predict (transformers/trainer.py"]),
    ("write outputs", ["write_json", "write_jsonl", "rmtree"]),
    ("rest of run_cell", ["run_cell (emogrid/training/train.py"]),
    ("interpreter start/exit, other", [""]),
]


def phase_of(stack: list[str]) -> str:
    text = stack
    # imports before `run` starts: <module> frames of the entry point; imports made lazily inside
    # a phase count for that phase (e.g. peft imported by apply_method).
    in_run = any("run (emogrid/training/train.py" in f for f in text)
    for name, markers in PHASES:
        if name.startswith("import") and in_run:
            continue
        for frame in text:
            if any(m and m in frame for m in markers):
                return name
    return PHASES[-1][0]


def lazy_imports(lines: list[tuple[list[str], int]]) -> dict[str, int]:
    """Samples spent importing modules inside each phase (lazy imports)."""
    out: collections.Counter = collections.Counter()
    for stack, n in lines:
        if any("_find_and_load" in f for f in stack) and any("run (emogrid/training/train.py" in f for f in stack):
            out[phase_of(stack)] += n
    return dict(out)


def read(path: str) -> list[tuple[list[str], int]]:
    lines = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            frames = stack.split(";")
            # py-spy prints the thread first ("process 123:..." / "thread (0x..)"); keep the main thread
            lines.append((frames, int(count)))
    return lines


def main() -> int:
    lines = read(sys.argv[1])
    threads = collections.Counter(f[0] for f, _ in lines)
    main_thread = max(threads, key=threads.get) if threads else None
    lines = [(f, n) for f, n in lines if f[0] == main_thread] if main_thread and "thread" in main_thread else lines
    total = sum(n for _, n in lines)
    by = collections.Counter()
    for stack, n in lines:
        by[phase_of(stack)] += n
    lazy = lazy_imports(lines)
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 50.0
    print(f"{total} samples (~{total / rate:.1f} s at {rate:g} Hz)")
    print(f"{'phase':45s} {'share':>6s} {'~s':>7s}  of which importing")
    for name, _ in PHASES:
        n = by.get(name, 0)
        if n:
            imp = lazy.get(name, 0)
            print(f"{name:45s} {100 * n / total:5.1f}% {n / rate:7.1f}  {imp / rate:5.1f}s" if imp else
                  f"{name:45s} {100 * n / total:5.1f}% {n / rate:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
