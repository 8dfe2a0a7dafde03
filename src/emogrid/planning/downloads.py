"""What fetching a study's models costs on disk, per model, before anything is downloaded
(the plan's downloads table): a fetch receipt's bytes, the hub's file list, or parameters x
checkpoint dtype from the model's config."""

from __future__ import annotations

import os

from emogrid.data.fetch import MODEL_PATTERNS, hub_models, read_receipt, receipt_path
from emogrid.errors import EmogridError
from emogrid.planning.structure import build_meta_model, bundled_config_name, checkpoint_dtype, model_config_dict


def download_rows(config: dict, results: str | os.PathLike | None = None, *,
                  online: bool | None = None) -> list[dict]:
    """What fetching the study's models costs on disk, per model, before downloading.

    A receipt gives the bytes on disk; else, with network, the hub's file list (the files
    fetch_model takes); else an estimate from config.json: parameters x checkpoint dtype.
    Local models (path/package) download nothing. `results`: the study's folder by default."""
    from emogrid.study.results_dir import study_results_dir

    results = study_results_dir(config) if results is None else results
    if online is None:
        online = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("1", "true", "yes", "on")
    rows = []
    hub = hub_models(config)
    for name in config["grid"]["models"]:
        model = config["models"][name]
        row = {"model": name, "id": model.get("id") or "", "revision": model.get("revision") or "main"}
        receipt = receipt_path(results, "models", name)
        if name not in hub:
            row.update(download_mb=0.0, source="local (no download)")
        elif receipt.is_file():
            row.update(download_mb=read_receipt(receipt)["bytes"] / 2**20, source="fetched (receipt)")
        else:
            size = _hub_file_list_bytes(model) if online else None
            if size is not None:
                row.update(download_mb=size / 2**20, source="hub file list")
            else:
                row.update(download_mb=_estimate_bytes(model) / 2**20,
                           source="estimate: parameters x checkpoint dtype (config.json)")
        rows.append(row)
    return rows


def _hub_file_list_bytes(model: dict) -> int | None:
    """Sum of the sizes of the files fetch_model would take, from the hub's listing (None offline)."""
    from fnmatch import fnmatch

    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(model["id"], revision=model.get("revision"), files_metadata=True)
    except Exception:  # noqa: BLE001 - no network, gated, unknown: fall back to the estimate
        return None
    return sum(int(f.size or 0) for f in info.siblings or []
               if any(fnmatch(f.rfilename.rsplit("/", 1)[-1], p) for p in MODEL_PATTERNS))


def _estimate_bytes(model: dict) -> float:
    """Parameters of the base model (meta device) x bytes of the checkpoint dtype; NaN if no config."""
    if not model.get("path") and not bundled_config_name({"name": model.get("name"), **model}):
        return float("nan")  # its config.json is on the hub only: never download to estimate
    try:
        cfg_dict, _ = model_config_dict({"name": model.get("name"), **model})
    except EmogridError:
        return float("nan")
    meta, _ = build_meta_model(cfg_dict, 2)
    params = sum(p.numel() for p in meta.parameters())
    return params * {"bf16": 2, "fp16": 2}.get(checkpoint_dtype(cfg_dict), 4)
