"""`emogrid publish CELL_DIR --repo ORG/NAME`: one trained cell as a hub model repository.

Writes a folder (default `<results>/publish/ORG/NAME`, beside `runs/`) holding the cell's
`adapter/` files (a peft adapter, or the full weights of a full fine-tuning cell; saved when
the cell ran with `train.save_adapter: true`), its `spec.json` and `metrics.json` (the host name
left out) and `README.md`, a model card (huggingface_hub's `ModelCard`): base model and its
revision, dataset and its revision, the k labels, n, seed, the recipe (the spec's method, adapter
and train sections), test metrics with their 95% intervals over the test examples (cells.csv's,
computed by the same function), the emogrid version and the cell id. Then uploads the folder
(`HfApi.create_repo` + `upload_folder`; a token from `HF_TOKEN` or `hf auth login`).
`--dry-run` writes the folder and stops: nothing touches the network. `predictions.jsonl` (it
holds the dataset's example ids) is copied only with `--include-predictions`.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path
from typing import Any

from emogrid.errors import ConfigError, EmogridError

METRIC_NAMES = {"accuracy": "accuracy", "f1_macro": "macro-F1", "f1_micro": "micro-F1"}
RECIPE_SECTIONS = ("method", "lora", "ia3", "adalora", "quant", "train", "data")


# ----------------------------------------------------------------------------- the cell


def read_cell(cell_dir: str | Path) -> dict[str, Any]:
    """The finished cell in `cell_dir`: metrics, spec, adapter folder and where its runs tree is."""
    from emogrid.training import cell_files

    cell_dir = Path(cell_dir)
    path = cell_dir / "metrics.json"
    if not path.is_file():
        raise EmogridError(f"{path}: missing; CELL_DIR must be a finished cell's folder "
                           "(<results>/runs/<dataset>/<model>/<method>/.../k<K>_n<N>/s<SEED>), or its cell id with "
                           "the study's --configfile")
    checked = cell_files.read(path, "metrics")
    if not checked.valid:
        raise EmogridError(f"{checked.reason}", hint="only a cell with a valid metrics.json can be published")
    metrics = checked.data
    cell_id = metrics["cell_id"]
    parts = cell_id.split("/")
    in_tree = cell_dir.resolve().parts[-len(parts):] == tuple(parts)
    adapter = cell_dir / "adapter"
    if not adapter.is_dir() or not any(adapter.iterdir()):
        raise EmogridError(f"{adapter}: no adapter or weights saved for this cell",
                           hint="train it with train.save_adapter: true (in the study config; it reruns the "
                                "cells it applies to)")
    return {"dir": cell_dir, "cell_id": cell_id, "metrics": metrics, "spec": cell_files.read_spec(cell_dir),
            "adapter": adapter, "peft": (adapter / "adapter_config.json").is_file(),
            "runs_dir": cell_dir.resolve().parents[len(parts) - 1] if in_tree else None}


def cell_intervals(cell: dict) -> dict[str, tuple[float, float]]:
    """{metric: (low, high)}: the cell's 95% interval over its test examples, computed by the
    functions `emogrid aggregate` computes cells.csv's with (from predictions.jsonl when the cell
    sits in its runs tree, else from its confusion matrix)."""
    import numpy as np
    import pandas as pd

    from emogrid.results import uncertainty

    test = cell["metrics"]["test"]
    multi = "f1_micro" in test or "exact_match" in test
    frame = pd.DataFrame([{"cell_id": cell["cell_id"], "labels": len(test["labels"]),
                           "mode": "multi" if multi else "single", "status": "ok"}])
    confusions = {}
    if isinstance(test.get("confusion_matrix"), list):
        confusions[(cell["cell_id"], "test")] = np.asarray(test["confusion_matrix"], dtype=np.int64)
    reps = uncertainty.example_replicates(frame, confusions, cell["runs_dir"], ("test",))
    columns = uncertainty.cell_columns(frame, confusions, reps).iloc[0]  # cells.csv's interval columns
    return {m: (float(columns[f"test_{m}_ci95_low"]), float(columns[f"test_{m}_ci95_high"]))
            for m in uncertainty.METRICS if f"test_{m}_ci95_low" in columns}


# ----------------------------------------------------------------------------- the card


def _cell_text(value: Any) -> str:
    if value is None:
        return "–"
    text = json.dumps(value) if isinstance(value, (list, dict, bool)) else str(value)
    return text.replace("|", "\\|")


def _table(rows: list[tuple[str, Any]], heads: tuple[str, str] = ("", "")) -> list[str]:
    return [f"| {heads[0]} | {heads[1]} |", "|:--|:--|"] + [f"| {k} | {_cell_text(v)} |" for k, v in rows]


def _source(source: dict | None, fallback: str) -> tuple[str, str | None]:
    """(where, revision) of a provenance source: a hub id + revision/commit, or a local path."""
    source = source or {}
    if source.get("id"):
        revision = source.get("commit") or source.get("revision")
        requested = source.get("revision")
        if source.get("commit") and requested and requested != source["commit"]:
            revision = f"{source['commit']} (requested {requested})"
        return source["id"], revision
    if source.get("path"):
        return f"local files ({Path(str(source['path'])).name})", None
    return fallback, None


def build_card(cell: dict, repo: str, intervals: dict[str, tuple[float, float]]):
    """The model card (huggingface_hub.ModelCard) of a cell."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    import emogrid

    metrics, spec = cell["metrics"], cell["spec"] or {}
    axes, prov, test, val = metrics["cell"], metrics.get("provenance") or {}, metrics["test"], metrics.get("val") or {}
    model_spec = spec.get("model") or {}
    base, base_rev = _source(prov.get("model_source"), model_spec.get("id") or str(axes["model"]))
    base_rev = base_rev or model_spec.get("revision")
    data, data_rev = _source(prov.get("data_source"), str(axes["dataset"]))
    hub_model = (prov.get("model_source") or {}).get("id") or model_spec.get("id")
    hub_data = (prov.get("data_source") or {}).get("id")
    versions = prov.get("versions") or {}
    labels = list(test.get("labels") or [])
    method = str(axes["method"])
    kind = "adapter" if cell["peft"] else "fine-tuned model (full weights)"
    name = repo.split("/", 1)[1]
    results = [EvalResult(task_type="text-classification", dataset_type=hub_data or str(axes["dataset"]),
                          dataset_name=str(axes["dataset"]), dataset_split="test", dataset_revision=data_rev,
                          metric_type=m, metric_name=f"test {METRIC_NAMES.get(m, m)}", metric_value=float(test[m]))
               for m in ("accuracy", "f1_macro", "f1_micro") if m in test]
    card_data = ModelCardData(
        model_name=name, base_model=hub_model or None, datasets=[hub_data] if hub_data else None,
        library_name="peft" if cell["peft"] else "transformers", pipeline_tag="text-classification",
        tags=["emogrid", "text-classification", method], metrics=["accuracy", "f1"], eval_results=results)

    n_val = int(val.get("n") or 0)
    lines = [f"# {name}", "",
             f"A {method} {kind} of {base} for {len(labels)}-label classification on {axes['dataset']}, trained "
             f"by emogrid as one cell of a study grid: `{cell['cell_id']}`.", "",
             "## Base model", ""]
    lines += _table([("model", f"{base} (emogrid name: {axes['model']})"), ("revision", base_rev or "not recorded")])
    lines += ["", "## Data", ""]
    lines += _table([("dataset", f"{data} (emogrid name: {axes['dataset']})"),
                     ("revision", data_rev or "not recorded"), ("data checksum", prov.get("data_checksum")),
                     (f"labels (k = {len(labels)})", ", ".join(labels)),
                     ("examples n", f"{axes['samples']} (train {int(axes['samples']) - n_val}, validation {n_val}); "
                                    f"test {test.get('n')}"),
                     ("seed", axes["seed"])])
    lines += ["", "## Recipe", ""]
    if spec:
        rows = [(f"{section}.{key}", value) for section in RECIPE_SECTIONS if isinstance(spec.get(section), dict)
                for key, value in spec[section].items()]
        lines += _table(rows, ("setting", "value"))
    else:
        lines.append("Not recorded: the cell was trained before emogrid wrote spec.json (its axes: "
                     + ", ".join(f"{k} {v}" for k, v in axes.items()) + ").")
    lines += ["", "## Test metrics", "",
              "In %, on the subset's test split, with the 95% interval over its test examples that "
              "emogrid's cells.csv reports for the cell (`test_<metric>_ci95_low/high`).", "",
              "| metric | value | 95% interval |", "|:--|--:|:--|"]
    for m in ("accuracy", "f1_macro", "f1_micro"):
        if m in test:
            low, high = intervals.get(m, (math.nan, math.nan))
            interval = "–" if math.isnan(low) else f"[{100 * low:.1f}, {100 * high:.1f}]"
            lines.append(f"| {METRIC_NAMES[m]} | {100 * float(test[m]):.1f} | {interval} |")
    loader = ("from peft import AutoPeftModelForSequenceClassification as Auto" if cell["peft"]
              else "from transformers import AutoModelForSequenceClassification as Auto")
    lines += ["", "## Use", "", "```python", loader, "from transformers import AutoTokenizer", "",
              f'model = Auto.from_pretrained("{repo}")', f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
              "```", "", f"Class index i is label i of: {', '.join(labels)}.", "", "## Provenance", ""]
    lines += _table([("emogrid cell", f"`{cell['cell_id']}`"), ("config hash", prov.get("config_hash")),
                     ("trained with emogrid", versions.get("emogrid") or "not recorded"),
                     ("card written by emogrid", emogrid.__version__), ("git commit", prov.get("git_commit")),
                     ("torch / transformers / peft", " / ".join(str(versions.get(p)) for p in
                                                                ("torch", "transformers", "peft"))),
                     ("device, precision", f"{prov.get('device')}, {prov.get('precision')}"),
                     ("finished", prov.get("finished"))])
    content = f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"
    return ModelCard(content)


# ----------------------------------------------------------------------------- the folder


def write_folder(cell: dict, out: Path, repo: str, include_predictions: bool = False) -> list[Path]:
    """The repository's files in `out` (replaced); returns them."""
    from emogrid import atomic

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(cell["adapter"], out)
    if cell["peft"]:
        _point_adapter_at_the_hub(out / "adapter_config.json", cell)
    metrics = json.loads(json.dumps(cell["metrics"]))
    (metrics.get("provenance") or {}).pop("hostname", None)
    atomic.write_json(out / "metrics.json", metrics)
    if cell["spec"] is not None:
        atomic.write_json(out / "spec.json", cell["spec"])
    if include_predictions and (cell["dir"] / "predictions.jsonl").is_file():
        shutil.copy2(cell["dir"] / "predictions.jsonl", out / "predictions.jsonl")
    card = build_card(cell, repo, cell_intervals(cell))
    card.save(out / "README.md")
    return sorted(p for p in out.rglob("*") if p.is_file())


def _point_adapter_at_the_hub(path: Path, cell: dict) -> None:
    """adapter_config.json names the base model by the local folder it trained from; a hub id
    (and the commit it resolved to) lets `from_pretrained` find it anywhere."""
    prov = cell["metrics"].get("provenance") or {}
    source = prov.get("model_source") or {}
    hub_id = source.get("id") or ((cell["spec"] or {}).get("model") or {}).get("id")
    if not hub_id:
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = hub_id
    if source.get("commit") or source.get("revision"):
        config["revision"] = source.get("commit") or source.get("revision")
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def cell_folder(args: argparse.Namespace) -> Path:
    """CELL as a folder; else a cell id under the study's runs (--configfile / --results, the
    Snakefile's rule for the results folder)."""
    from emogrid.cli_config import results_from_args

    given = Path(args.cell_dir)
    if given.is_dir():
        return given
    return results_from_args(args) / "runs" / args.cell_dir.strip("/")


def default_out(cell: dict, repo: str) -> Path:
    """`<results>/publish/ORG/NAME` beside the cell's runs tree (else beside the cell folder)."""
    base = cell["runs_dir"].parent if cell["runs_dir"] is not None else cell["dir"].parent
    return base / "publish" / repo


def upload(folder: Path, repo: str, private: bool, cell_id: str) -> str:
    """Create the repository if needed and upload the folder; returns the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo, repo_type="model", folder_path=str(folder),
                                 commit_message=f"emogrid publish {cell_id}")
    except Exception as err:  # noqa: BLE001 - network, auth, permissions: all the user's to fix
        raise EmogridError(f"uploading {folder} to {repo} failed: {type(err).__name__}: {err}",
                           hint="log in (hf auth login) or set HF_TOKEN with write access; --dry-run writes "
                                "the folder only") from None
    return str(getattr(info, "commit_url", info))


# ----------------------------------------------------------------------------- command


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from emogrid.cli_config import add_config_args, add_results_arg

    parser.add_argument("cell_dir", metavar="CELL", help="a finished cell's folder (<results>/runs/<cell id>), or its "
                                                         "cell id in the study's results folder (below)")
    add_config_args(parser)  # the study, only to find its results folder for a cell id
    add_results_arg(parser)
    parser.add_argument("--repo", required=True, metavar="ORG/NAME", help="hub repository to create or update")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="folder to write (default: <results>/publish/ORG/NAME)")
    parser.add_argument("--dry-run", action="store_true", help="write the folder and card only; upload nothing")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--include-predictions", action="store_true",
                        help="also publish predictions.jsonl (it holds the dataset's example ids)")


def run(args: argparse.Namespace) -> int:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(args.repo)
    except HFValidationError as err:
        raise ConfigError(f"--repo {args.repo}: {err}") from None
    if "/" not in args.repo:
        raise ConfigError(f"--repo {args.repo}: expected ORG/NAME (an organisation or user, then the model's name)")
    cell = read_cell(cell_folder(args))
    out = Path(args.out) if args.out else default_out(cell, args.repo)
    files = write_folder(cell, out, args.repo, include_predictions=args.include_predictions)
    print(f"emogrid publish: wrote {len(files)} files to {out} (card: {out / 'README.md'})")
    if args.dry_run:
        print("emogrid publish: dry run, nothing uploaded")
        return 0
    url = upload(out, args.repo, args.private, cell["cell_id"])
    print(f"emogrid publish: uploaded to {args.repo}: {url}")
    return 0
