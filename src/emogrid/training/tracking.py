"""Live training curves in the tools researchers already watch (`train.report_to`).

One run per cell, named by its cell id and grouped by study, written under `results/` so
nothing needs a server or the network: TensorBoard event files in
`results/tensorboard/<study>/<cell_id>/`, Weights & Biases in offline mode under
`results/wandb/` (`wandb sync` uploads later), MLflow in a file store at `results/mlruns/`
(`mlflow ui --backend-store-uri results/mlruns`).

The choice is global to a run and travels in the environment (`EMOGRID_REPORT_TO`,
`EMOGRID_STUDY`, exported by the Snakefile) rather than in the cell spec, so turning curves
on or off never reruns a finished cell.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from emogrid.errors import CellError
from emogrid.study.spec_sections import TrainRecipe

TOOLS = ("none", "tensorboard", "wandb", "mlflow")
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def export(config: dict, environ=None) -> None:
    """Put the study's `train.report_to` and name where the jobs read them (the Snakefile)."""
    environ = os.environ if environ is None else environ
    environ["EMOGRID_REPORT_TO"] = str(config["train"].get("report_to", "none"))
    environ["EMOGRID_STUDY"] = str(config["study"]["name"])


def choice(spec: dict) -> str:
    tool = os.environ.get("EMOGRID_REPORT_TO") or TrainRecipe.from_spec(spec).report_to
    if tool not in TOOLS:
        raise CellError(f"train.report_to: expected one of {', '.join(TOOLS)}, got {tool!r}")
    return tool


def study_name(spec: dict) -> str:
    return os.environ.get("EMOGRID_STUDY") or spec.get("study") or "study"


def results_root(out: Path, cell_id: str | None) -> Path:
    """`results/` from a cell's run folder `results/runs/<cell_id>`."""
    out = Path(out).resolve()
    depth = len([p for p in str(cell_id or "").split("/") if p])
    return out.parents[depth] if depth and len(out.parents) > depth else out.parent


def setup(spec: dict, out: Path) -> dict:
    """TrainingArguments fields and extra callbacks for the chosen tool.

    Returns {"report_to": ..., "run_name": ..., "callbacks": [...], "log_dir": Path | None}."""
    tool = choice(spec)
    cell_id = spec.get("cell_id") or Path(out).name
    result = {"report_to": "none", "run_name": cell_id, "callbacks": [], "log_dir": None}
    if tool == "none":
        return result
    if importlib.util.find_spec(PACKAGES[tool]) is None:
        raise CellError(f"train.report_to is {tool} but the {PACKAGES[tool]} package is not installed",
                        hint=f"pip install {PACKAGES[tool]}, or set train.report_to: none")
    root, study = results_root(out, cell_id), study_name(spec)
    if tool == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        log_dir = root / "tensorboard" / study / cell_id
        log_dir.mkdir(parents=True, exist_ok=True)
        result["callbacks"] = [TensorBoardCallback(SummaryWriter(log_dir=str(log_dir)))]
        result["log_dir"] = log_dir
    elif tool == "wandb":
        log_dir = root / "wandb"
        log_dir.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_DIR", str(log_dir))
        os.environ.setdefault("WANDB_PROJECT", study)
        os.environ.setdefault("WANDB_RUN_GROUP", study)
        result.update(report_to=["wandb"], log_dir=log_dir)
    elif tool == "mlflow":
        log_dir = root / "mlruns"
        log_dir.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("MLFLOW_TRACKING_URI", log_dir.as_uri())
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", study)
        result.update(report_to=["mlflow"], log_dir=log_dir)
    return result
