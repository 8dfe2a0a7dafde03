"""The plan's tables: one row per distinct cell, the LoRA sizing table, the downloads table,
and the small Markdown/CSV writers they share.

The Markdown writer is kept here rather than `DataFrame.to_markdown`: tabulate pads every
column to its widest cell, and the compact `| a | b |` rows are what readers (and tests) grep.
"""

from __future__ import annotations

from emogrid.planning.checkpoints import checkpoint_disk, policy_markdown
from emogrid.planning.memory import plan_cell_memory
from emogrid.planning.structure import build_meta_model, model_config_dict
from emogrid.scheduling.resources import DEFAULT_SAFETY_MARGIN
from emogrid.study.cell_id import CellId

PLAN_COLUMNS = ["dataset", "model", "method", "variant", "labels", "device", "family", "trainable_params",
                "total_params", "trainable_percent", "precision", "weights_dtype", "quantize", "optim", "batch_size",
                "seq_len_peak", "token_stats_source", "weights_mb", "trainable_mb", "gradients_mb", "optimizer_mb",
                "activations_mb", "transient_mb", "allocator_mb", "context_mb", "overhead_mb", "reserved_peak_mb",
                "train_peak_mb", "inference_mb", "host_load_mb", "host_save_mb", "host_mem_mb", "checkpoint_disk_mb",
                "fits"]
# plan.md: the columns a reader compares (plan.csv has them all); `fits` when a GPU size is known
PLAN_MD_COLUMNS = ["model", "method", "variant", "labels", "device", "trainable_params", "total_params",
                   "trainable_percent", "weights_dtype", "quantize", "optim", "weights_mb", "gradients_mb",
                   "optimizer_mb", "activations_mb", "train_peak_mb", "inference_mb", "host_mem_mb",
                   "checkpoint_disk_mb"]

LORA_SIZING_RANKS = (8, 16, 32, 64, 128, 256, 512)
LORA_SIZING_TARGETS = ("attention", "all-linear")
LORA_COLUMNS = ["model", "targets", "r", "lora_params", "total_params", "lora_percent"]


# ----------------------------------------------------------------------------- writers

def _fmt(v, column: str = "") -> str:
    if column == "rel_error" and isinstance(v, (int, float)):
        return f"{100 * v:+.1f}%"
    if isinstance(v, float):
        return f"{v:.4f}" if column.endswith("percent") else f"{v:,.1f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)


def to_markdown(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c), c) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict], columns: list[str]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({c: row.get(c) for c in columns})
    return buf.getvalue()


# ----------------------------------------------------------------------------- plan

def plan_rows(cells, *, device="cuda", token_stats: dict | None = None,
              gpu_mem_mb: float | None = None, margin: float = DEFAULT_SAFETY_MARGIN) -> list[dict]:
    """One row per distinct (model, method, variant, labels): seeds and sample sizes share a plan.

    `device`: "cuda" / "cpu" for every cell, or {model name: device}."""
    rows, seen = [], set()
    for cell in cells:
        axes = cell.axes
        variant = CellId.from_axes(axes).variant
        # datasets differ in token lengths (emogrid.planning.tokens.dataset_token_stats)
        key = (axes["model"], axes["method"], variant, axes["labels"],
               axes["dataset"] if callable(token_stats) else None)
        if key in seen:
            continue
        seen.add(key)
        dev = device.get(axes["model"], "cuda") if isinstance(device, dict) else device
        est = plan_cell_memory(cell.spec, device=dev, token_stats=token_stats)
        fits = "" if gpu_mem_mb is None else ("yes" if est["train_peak_mb"] * margin <= gpu_mem_mb else "NO")
        rows.append({"dataset": axes["dataset"], "model": axes["model"], "method": axes["method"], "variant": variant,
                     "labels": axes["labels"], "device": dev, **est, **checkpoint_disk(cell.spec, est),
                     "fits": fits})
    return rows


def plan_markdown(rows: list[dict], with_fits: bool) -> str:
    """The plan table (a dataset column when the study has several), then the checkpoint policy
    and the largest disk a running cell takes."""
    several = len({r.get("dataset") for r in rows}) > 1  # then each row names its dataset
    return (to_markdown(rows, ["dataset"] * several + PLAN_MD_COLUMNS + (["fits"] if with_fits else []))
            + "\n" + policy_markdown(rows))


# ----------------------------------------------------------------------------- LoRA sizing

def lora_sizing_rows(model_specs: dict[str, dict], num_labels: int = 2) -> list[dict]:
    """Trainable params of LoRA for each rank x target set (head excluded: adapters only).

    LoRA adds r * (in + out) per targeted Linear/Conv1D, so the table is computed from the meta
    model's module shapes and the trainer's target sets (`adapters.resolve_targets`), matched
    the way peft matches them; tests check it equals peft's own count.
    """
    import torch.nn as nn

    from emogrid.models.adapters import resolve_targets

    rows = []
    for name, mspec in model_specs.items():
        cfg_dict, _src = model_config_dict({"name": name, **mspec})
        model, family = build_meta_model(cfg_dict, num_labels)
        base_total = sum(p.numel() for p in model.parameters())
        for targets in LORA_SIZING_TARGETS:
            suffixes = resolve_targets(model, family, targets)
            per_rank = 0
            for mname, mod in model.named_modules():
                if not any(mname == t or mname.endswith("." + t) for t in suffixes):
                    continue
                if isinstance(mod, nn.Linear):
                    per_rank += mod.in_features + mod.out_features
                elif type(mod).__name__ == "Conv1D":
                    per_rank += sum(mod.weight.shape)
            for r in LORA_SIZING_RANKS:
                n = per_rank * r
                rows.append({"model": name, "targets": targets, "r": r, "lora_params": n,
                             "total_params": base_total + n, "lora_percent": 100.0 * n / (base_total + n)})
    return rows


def lora_sizing_spec(name: str, mspec: dict, r: int, targets: str, num_labels: int = 2) -> dict:
    """The cell spec whose count a lora_sizing_rows row stands for (adapters only, no head)."""
    return {"model": {"name": name, **mspec},
            "method": {"name": "lora", "peft": "lora", "quantize": "none", "use_dora": False},
            "lora": {"r": r, "alpha": 2 * r, "dropout": 0.0, "targets": targets, "head": "full"},
            "train": {"train_head": False}, "cell": {"labels": num_labels}}


def lora_sizing_markdown(rows: list[dict]) -> str:
    """Markdown: one row per (model, targets), one column per rank."""
    out = ["| model | targets | " + " | ".join(f"r={r}" for r in LORA_SIZING_RANKS) + " |",
           "|---|---|" + "---|" * len(LORA_SIZING_RANKS)]
    by = {}
    for row in rows:
        by.setdefault((row["model"], row["targets"]), {})[row["r"]] = row
    for (model, targets), ranks in by.items():
        cells = [f"{ranks[r]['lora_params']:,} ({ranks[r]['lora_percent']:.2f}%)" for r in LORA_SIZING_RANKS]
        out.append(f"| {model} | {targets} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- downloads

def downloads_markdown(config: dict, results) -> str:
    """The disk the study's model downloads take (emogrid.planning.downloads.download_rows), with the total."""
    import math

    from emogrid.planning.downloads import download_rows

    rows = download_rows(config, results)
    lines = ["Downloads (fetch_model, into fetch.cache_dir):", "",
             "| model | id | revision | download_mb | source |", "|---|---|---|---:|---|"]
    for r in rows:
        size = "?" if math.isnan(r["download_mb"]) else f"{r['download_mb']:,.0f}"
        lines.append(f"| {r['model']} | {r['id']} | {r['revision']} | {size} | {r['source']} |")
    total = sum(r["download_mb"] for r in rows if not math.isnan(r["download_mb"]))
    lines.append(f"| **total** | | | **{total:,.0f}** | |")
    return "\n".join(lines) + "\n"
