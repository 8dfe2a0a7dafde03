"""The efficiency table: per model x method, trainable parameters and %, train time, peak
memory, throughput and (GPU cells) measured / planned memory, means over its finished cells.
"""

from __future__ import annotations

import pandas as pd

from emogrid.report.paper_tables.layout import (
    DASH,
    header_names,
    latex_escape,
    row_keys_of,
    row_label_cells,
    sorted_rows,
)


def _human(value: float) -> str:
    if value is None or pd.isna(value):
        return DASH
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= div:
            return f"{value / div:.2f}{unit}"
    return f"{value:.0f}"


EFFICIENCY_COLUMNS = [
    ("trainable_params", "Trainable params", lambda v: _human(v)),
    ("trainable_percent", "Trainable %", lambda v: DASH if pd.isna(v) else f"{v:.2f}"),
    # training steps only; evaluation and checkpoint saves beside it (emogrid.training.efficiency)
    ("train_seconds", "Train time (s)", lambda v: DASH if pd.isna(v) else f"{v:.1f}"),
    ("eval_seconds", "Eval time (s)", lambda v: DASH if pd.isna(v) else f"{v:.1f}"),
    ("checkpoint_seconds", "Checkpoint time (s)", lambda v: DASH if pd.isna(v) else f"{v:.1f}"),
    ("peak_memory_mb", "Peak memory (MB)", lambda v: DASH if pd.isna(v) else f"{v:.0f}"),
    ("train_samples_per_second", "Samples/s", lambda v: DASH if pd.isna(v) else f"{v:.1f}"),
    # GPU cells only (emogrid.training.efficiency.gpu_plan_check): the planner's estimate, and measured / plan
    ("planned_gpu_mb", "Planned GPU (MB)", lambda v: DASH if pd.isna(v) else f"{v:.0f}"),
    ("gpu_plan_ratio", "Measured / plan", lambda v: DASH if pd.isna(v) else f"{v:.2f}"),
]


# a tuned study (emogrid.results.tuning.tuning_compute): what the study's cells and their tuning cost
TUNING_COLUMNS = [
    ("final_seconds", "Study train time, total (s)", lambda v: DASH if pd.isna(v) else f"{v:.0f}"),
    ("tuning_seconds", "Tuning train time, total (s)", lambda v: DASH if pd.isna(v) else f"{v:.0f}"),
    ("tuning_cells", "Tuning cells", lambda v: DASH if pd.isna(v) else f"{v:.0f}"),
    # successive halving only: every candidate on the whole budget, estimated from the first rung
    ("full_search_seconds", "Full search, est. (s)", lambda v: DASH if pd.isna(v) else f"{v:.0f}"),
]


def efficiency_frame(cells: pd.DataFrame, levels: dict, tuning: pd.DataFrame | None = None) -> pd.DataFrame:
    """The efficiency rows; with `tuning` (compute per model x method), the study's total train
    time beside its tuning's."""
    frame = _efficiency_frame(cells, levels)
    if tuning is None or tuning.empty or frame.empty:
        return frame
    keys = [k for k in ("dataset", "model", "method", "variant") if k in frame.columns]
    ok = cells[cells["status"] == "ok"]
    totals = ok.groupby(keys, dropna=False, sort=False)["train_seconds"].sum().rename("final_seconds").reset_index()
    frame = frame.merge(totals, on=keys, how="left")
    extra = tuning[[k for k in keys] + ["tuning_seconds", "tuning_cells", "full_search_seconds"]]
    frame = frame.merge(extra.groupby(keys, dropna=False, sort=False).sum().reset_index(), on=keys, how="left")
    if ((frame["full_search_seconds"] - frame["tuning_seconds"]).abs() < 0.5).all():
        frame = frame.drop(columns="full_search_seconds")  # no halving: the search was the full one
    return frame


def _efficiency_frame(cells: pd.DataFrame, levels: dict) -> pd.DataFrame:
    ok = cells[cells["status"] == "ok"]
    cols = [c for c, _, _ in EFFICIENCY_COLUMNS if c in ok.columns]
    keys = row_keys_of(cells, levels) if len(ok) else ["model", "method", "variant"]
    if ok.empty or not cols:
        return pd.DataFrame(columns=keys + [c for c, _, _ in EFFICIENCY_COLUMNS] + ["cells", "memory_kind"])
    frame = ok.groupby(keys, dropna=False, sort=False)[cols].mean(numeric_only=True)
    frame["cells"] = ok.groupby(keys, dropna=False, sort=False).size()
    if "peak_memory_kind" in ok:
        frame["memory_kind"] = ok.groupby(keys, dropna=False, sort=False)["peak_memory_kind"].agg(
            lambda s: "/".join(sorted({str(v) for v in s.dropna()})))
    if "gpu_co_tenants" in ok:  # packed cells (emogrid.training.efficiency.gpu_share)
        shared = ok.assign(_shared=pd.to_numeric(ok["gpu_co_tenants"], errors="coerce").fillna(0) > 0)
        frame["shared_gpu_cells"] = shared.groupby(keys, dropna=False, sort=False)["_shared"].sum().astype(int)
    frame = frame.reset_index()
    order = sorted_rows([tuple(r) for r in frame[keys].values.tolist()], keys, levels)
    frame["_o"] = [order.index(tuple(r)) for r in frame[keys].values.tolist()]
    return frame.sort_values("_o").drop(columns="_o").reset_index(drop=True)


def render_efficiency(frame: pd.DataFrame) -> dict[str, str]:
    keys = [k for k in ("dataset", "model", "method", "variant") if k in frame.columns]
    present = [(c, h, f) for c, h, f in EFFICIENCY_COLUMNS + TUNING_COLUMNS if c in frame.columns]
    shared = "shared_gpu_cells" in frame.columns
    heads = header_names(keys) + [h for _, h, _ in present] + ["Cells"] + (["Shared GPU"] if shared else [])
    body = []
    for rec in frame.to_dict("records"):
        row = row_label_cells(tuple(rec[k] for k in keys), keys)
        row += [f(rec[c]) for c, _, f in present] + [str(int(rec["cells"]))]
        if shared:
            n = int(rec["shared_gpu_cells"]) if not pd.isna(rec["shared_gpu_cells"]) else 0
            row.append(f"{n}/{int(rec['cells'])} †" if n else DASH)
        body.append(row)
    note = ("means over the finished cells of each model × method (all k, n, seeds); "
            "train time is the training steps only, evaluation and checkpoint saves are beside it; "
            "peak memory is GPU memory on CUDA, else process RSS"
            + ("; measured / plan = GPU memory reserved by PyTorch over `emogrid plan`'s estimate "
               "without the CUDA context (1 = exact; above 1 means packing by plan may overfill a GPU)"
               if "gpu_plan_ratio" in frame.columns else "")
            + ("; † shared GPU = cells that ran beside other cells on one GPU (resources.train.cells_per_gpu): "
               "their times include their neighbours' load (metrics.json efficiency.co_tenants names them)"
               if shared else "")
            + ("; study / tuning train time: totals over the study's cells and over every tuning cell "
               "(all rungs) of that model × method" if "tuning_seconds" in frame.columns else "")
            + ("; full search: every candidate on the whole budget, estimated from the first rung of "
               "successive halving" if "full_search_seconds" in frame.columns else ""))
    csv = frame.to_csv(index=False)
    md = "\n".join([f"**Efficiency** — {note}", "", "| " + " | ".join(heads) + " |",
                    "|" + "|".join([":--"] * (len(heads) - len(present) - 1 - shared)
                                   + ["--:"] * (len(present) + 1 + shared)) + "|"]
                   + ["| " + " | ".join(r) + " |" for r in body]) + "\n"
    spec = "l" * (len(heads) - len(present) - 1 - shared) + "r" * (len(present) + 1 + shared)
    tex = [f"% Efficiency: {note}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
           " & ".join(latex_escape(h) for h in heads) + r" \\", r"\midrule"]
    tex += [" & ".join(latex_escape(x).replace(DASH, "--") for x in r) + r" \\" for r in body]
    tex += [r"\bottomrule", r"\end{tabular}"]
    return {"csv": csv, "md": md, "tex": "\n".join(tex) + "\n"}
