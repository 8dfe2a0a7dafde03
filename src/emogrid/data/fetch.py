"""`emogrid fetch`: download each hub model and hub dataset of a study once, where the network is.

On most clusters only the login node reaches the model and dataset hubs. The DAG therefore
starts with one `fetch_model` job per hub model and one `fetch_dataset` job per hub dataset,
run as localrules (on the login node under the SLURM profile). They download into one
project-level cache in huggingface_hub's own layout (`models--org--name/snapshots/<sha>/`),
`fetch.cache_dir`, by default `results/hub`: it lies on the filesystem every job of the
study already reads (compute nodes see it, a home quota does not limit it), and the study
stays self-contained. Each fetch writes a receipt, `results/fetch/{models,datasets}/<name>.json`
(hub id, requested revision, resolved commit, snapshot directory, bytes), that data and
training jobs take as input; they then load the snapshot with HF_HUB_OFFLINE=1.

Models with `path:` or `package:` and datasets with local files need no fetch.
Errors (gated model, no token, typo, no network) name the model, the reason and what to do.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from emogrid import atomic
from emogrid.errors import EmogridError
from emogrid.study.results_dir import study_results_dir

DEFAULT_CACHE = "hub"  # under the results directory
RECEIPTS = "fetch"
# Only these files are fetched for a model: no pickled weights, ever (emogrid.models.loading loads
# safetensors only).
MODEL_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja"]
# A dataset snapshot: its data files and the card that names its configs and splits.
DATASET_PATTERNS = ["*.parquet", "*.arrow", "*.csv", "*.tsv", "*.json", "*.jsonl", "*.txt", "README.md",
                    "*.yaml"]


class FetchError(EmogridError):
    """A model or dataset could not be fetched; the message says which and what to do."""


# ---------------------------------------------------------------- what a study needs


def cache_dir(config: dict, results: str | os.PathLike | None = None) -> Path:
    """The download cache: `fetch.cache_dir`, else `<results>/hub` (the study's folder by default)."""
    chosen = (config.get("fetch") or {}).get("cache_dir")
    if chosen:
        return Path(chosen).expanduser()
    return (study_results_dir(config) if results is None else Path(results)) / DEFAULT_CACHE


def hub_models(config: dict) -> dict[str, dict]:
    """{name: {id, revision}} for the grid's models that come from the hub (no path/package)."""
    out = {}
    for name in config["grid"]["models"]:
        model = config["models"][name]
        if not model.get("path") and not model.get("package") and model.get("id"):
            out[name] = {"id": model["id"], "revision": model.get("revision")}
    return out


def receipt_path(results: str | os.PathLike, kind: str, name: str) -> Path:
    """`<results>/fetch/models/<name>.json` (kind: models | datasets)."""
    return Path(results) / RECEIPTS / kind / f"{name}.json"


def read_receipt(path: str | os.PathLike) -> dict:
    """A receipt written by `fetch_model` / `fetch_dataset`, checked for its snapshot."""
    path = Path(path)
    try:
        receipt = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise FetchError(
            f"cannot read the fetch receipt {path}: {err}",
            hint="rerun the fetch step (`emogrid fetch`, or delete the file and rerun snakemake)",
        ) from None
    snapshot = Path(receipt.get("snapshot", ""))
    if not snapshot.is_dir():
        raise FetchError(f"{path}: the snapshot {snapshot} it names is gone",
                         hint="delete the receipt and rerun snakemake (or `emogrid fetch`) to download again")
    return receipt


# ---------------------------------------------------------------- downloading


def fetch_model(name: str, model: dict, cache: str | os.PathLike, *, token: str | None = None) -> dict:
    """Download one model's snapshot (safetensors + configs + tokenizer); return its receipt."""
    return _fetch("model", name, model["id"], model.get("revision"), cache, MODEL_PATTERNS, token)


def fetch_dataset(name: str, hub: dict, cache: str | os.PathLike, *, token: str | None = None) -> dict:
    """Download one dataset repository's data files; return its receipt (with the config name)."""
    receipt = _fetch("dataset", name, hub["id"], hub.get("revision"), cache, DATASET_PATTERNS, token)
    receipt["config"] = hub.get("config")
    return receipt


def _fetch(kind: str, name: str, repo_id: str, revision: str | None, cache, patterns, token) -> dict:
    from huggingface_hub import snapshot_download

    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    try:
        snapshot = Path(snapshot_download(repo_id, repo_type=kind, revision=revision, cache_dir=cache,
                                          allow_patterns=patterns, token=token))
    except Exception as err:  # noqa: BLE001 - each hub failure becomes one actionable message
        raise explain(err, kind, name, repo_id, revision, cache) from None
    files = [p for p in snapshot.rglob("*") if p.is_file()]
    return {"kind": kind, "name": name, "id": repo_id, "revision": revision or "main",
            "commit": snapshot.name, "snapshot": str(snapshot.resolve()),
            "files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def explain(err: BaseException, kind: str, name: str, repo_id: str, revision: str | None,
            cache: Path) -> FetchError:
    """One message per way a hub download fails: which model, why, and what to do."""
    from huggingface_hub import errors

    section = "models" if kind == "model" else "datasets"
    what = f"{kind} '{name}' ({repo_id}@{revision or 'main'})"
    local = f"or download it elsewhere and set {section}.{name}.path to the folder"
    page = f"https://huggingface.co/{'datasets/' if kind == 'dataset' else ''}{repo_id}"
    if isinstance(err, errors.GatedRepoError):
        if _token() is None:
            return FetchError(f"{what} is gated and no hub token is set on this machine",
                              hint=f"accept the licence on {page}, then run `hf auth login` (or set HF_TOKEN), "
                                   f"then rerun; {local}")
        return FetchError(f"{what} is gated and your account has no access yet",
                          hint=f"accept the licence on {page} with the account of your token and wait for "
                               f"approval, then rerun; {local}")
    if isinstance(err, errors.RevisionNotFoundError):
        return FetchError(f"{what}: revision {revision!r} does not exist",
                          hint=f"set {section}.{name}.revision to a branch, tag or commit of {page}")
    if isinstance(err, errors.RepositoryNotFoundError):
        login = " (if it is private, run `hf auth login`)" if _token() is None else ""
        return FetchError(f"{what} does not exist on the hub or is private{login}",
                          hint=f"check the id in {section}.{name}.id; {local}")
    if isinstance(err, errors.LocalEntryNotFoundError):
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
        why = "HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached from this machine"
        return FetchError(f"{what} is not in the cache {cache} and {why}",
                          hint="run `emogrid fetch` (same --configfile) on a machine with internet access, e.g. "
                               f"the login node, sharing {cache}; {local}")
    return FetchError(f"{what} could not be fetched: {type(err).__name__}: {err}",
                      hint=f"check the network and the id, then rerun; {local}")


def _token() -> str | None:
    try:
        from huggingface_hub import get_token

        return get_token()
    except Exception:  # noqa: BLE001 - an unreadable token file is the same as none
        return None


def write_receipt(path: str | os.PathLike, receipt: dict) -> bool:
    """Write the receipt atomically; leave the file (and its mtime) alone when nothing changed,
    so re-fetching an unchanged snapshot never looks like new input to the jobs downstream."""
    path = Path(path)
    try:
        if json.loads(path.read_text(encoding="utf-8")) == receipt:
            return False
    except (OSError, json.JSONDecodeError):
        pass
    atomic.write_json(path, receipt)
    return True


# ---------------------------------------------------------------- command line


def configure_parser(p) -> None:
    from emogrid.cli_config import add_config_args

    add_config_args(p)
    p.add_argument("--model", metavar="NAME", help="fetch only this model of the study")
    p.add_argument("--dataset", metavar="NAME", help="fetch only this dataset of the study")
    p.add_argument("--spec", help="JSON of one model ({id, revision}) or dataset ({id, config, revision}) "
                                  "to fetch without reading a config (what the workflow's fetch jobs pass)")
    p.add_argument("--receipt", help="with --spec: where to write the receipt")
    from emogrid.cli_config import add_results_arg

    add_results_arg(p, writes="writes")  # receipts go to <results>/fetch
    p.add_argument("--cache", default=None, help="download cache (default: fetch.cache_dir, else <results>/hub)")


def run(args) -> int:
    if args.spec:
        if bool(args.model) == bool(args.dataset) or not args.receipt:
            raise EmogridError("--spec needs --receipt PATH and exactly one of --model NAME or --dataset NAME")
        if not args.cache and not args.results:
            raise EmogridError("--spec needs the download cache: --cache DIR (or --results DIR: <results>/hub)")
        spec = json.loads(args.spec)
        config = {}
        results = Path(args.results) if args.results else None
        jobs = ([("models", args.model, spec)] if args.model else [("datasets", args.dataset, spec)])
    else:
        from emogrid.cli_config import config_from_args, results_from_args

        config = config_from_args(args)
        results = results_from_args(args)
        jobs = [("models", n, m) for n, m in hub_models(config).items() if not args.dataset
                and (not args.model or n == args.model)]
        jobs += [("datasets", n, d) for n, d in hub_datasets(config).items() if not args.model
                 and (not args.dataset or n == args.dataset)]
        if (args.model or args.dataset) and not jobs:
            raise EmogridError(f"{args.model or args.dataset!r} is not a hub {'model' if args.model else 'dataset'} "
                               "of this study (local paths need no fetch)")
    cache = Path(args.cache) if args.cache else cache_dir(config, results)
    failures = []
    for kind, name, entry in jobs:
        target = Path(args.receipt) if args.spec else receipt_path(results, kind, name)
        try:
            fetch = fetch_model if kind == "models" else fetch_dataset
            receipt = fetch(name, entry, cache)
        except FetchError as err:
            print(f"emogrid fetch: {err}", file=sys.stderr)
            failures.append(name)
            continue
        write_receipt(target, receipt)
        print(f"{kind[:-1]} {name}: {receipt['id']}@{receipt['revision']} -> commit {receipt['commit']}, "
              f"{receipt['files']} files, {receipt['bytes'] / 2**20:.1f} MiB in {receipt['snapshot']}")
    if not jobs:
        print("nothing to fetch: every model and dataset of this study is local")
    if failures:
        raise FetchError(f"{len(failures)} of {len(jobs)} could not be fetched: {', '.join(failures)} "
                         "(reasons above)")
    return 0


def hub_datasets(config: dict) -> dict[str, dict]:
    """{name: {id, config, revision}} for the grid's datasets read from the hub (no local files;
    for GoEmotions, no EMOGRID_DATA_DIR either)."""
    from emogrid.data.goemotions import resolve_source
    from emogrid.study.grid import dataset_definitions

    out = {}
    for name, defn in dataset_definitions(config).items():
        hub = defn.hub
        if defn.kind == "goemotions":
            source = resolve_source(defn)
            if source.kind != "hub":
                continue
        elif defn.path or not (hub and hub.id):
            continue
        out[name] = {"id": hub.id, "config": hub.config, "revision": hub.revision}
    return out


def use_receipts(config: dict, results: str | os.PathLike | None = None) -> list[str]:
    """Point the config's hub models at their fetched snapshots where a receipt exists
    (the planner then reads config.json from disk, never from the hub). Returns the names."""
    used = []
    results = study_results_dir(config) if results is None else results
    for name in hub_models(config):
        path = receipt_path(results, "models", name)
        if path.is_file():
            config["models"][name]["path"] = read_receipt(path)["snapshot"]
            used.append(name)
    return used


def describe(receipt: dict) -> dict[str, Any]:
    """The provenance entry of a receipt: where the files came from, exactly."""
    return {k: receipt.get(k) for k in ("id", "revision", "commit")}
