"""Write one subset directory: load the dataset, draw the subset, write its files and manifest.

`prepare_subset` is what `emogrid prepare` runs. Output (docs/CONTRACTS.md, "Data subset
files"): `{train,val,test}.jsonl` + `manifest.json` in one directory, built in a temp directory
beside it and renamed into place, so a reader sees either the old complete subset or the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from emogrid import atomic
from emogrid.data.goemotions import load_source, resolve_source
from emogrid.data.splits import Loaded
from emogrid.data.subset_selection import build_subset
from emogrid.data.table import load_table
from emogrid.data.text_transforms import transform_rows
from emogrid.errors import DataError
from emogrid.study.dataset_definition import DatasetDefinition
from emogrid.study.schema import schema_default


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _count(rows: list[dict], label_names: list[str]) -> dict[str, int]:
    c = [0] * len(label_names)
    for row in rows:
        for j in row["labels"]:
            c[j] += 1
    return dict(zip(label_names, c))


def _jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def load_dataset_definition(defn: DatasetDefinition, cache_dir=None) -> Loaded:
    """Any dataset definition (emogrid.study.datasets) -> its checked splits."""
    if defn.kind == "goemotions":
        return load_source(resolve_source(defn), cache_dir=cache_dir)
    return load_table(defn, cache_dir=cache_dir)


def prepare_subset(defn: DatasetDefinition, k: int, n: int, seed: int, out_dir: str | os.PathLike,
                   cache_dir: str | os.PathLike | None = None) -> dict:
    """Build the (k, n, seed) subset in `out_dir` (replaced as a whole); return the manifest.

    `defn`: a dataset definition (`emogrid.study.datasets.resolve_dataset`, or
    `DatasetDefinition.from_json` of the config's `data:` section for GoEmotions as before
    datasets became an axis). `cache_dir` holds `datasets`' build of local files (None: a
    temporary directory).
    """
    loaded = load_dataset_definition(defn, cache_dir)
    chosen, rows = build_subset(loaded, defn, int(k), int(n), int(seed))
    rows = {split: transform_rows(r, defn.transforms) for split, r in rows.items()}
    label_names = [loaded.names[i] for i in chosen]

    payload = {split: _jsonl_bytes(r) for split, r in rows.items()}
    files = {f"{split}.jsonl": _sha256(b) for split, b in payload.items()}
    manifest = {
        "dataset": defn.name,
        "taxonomy": defn.taxonomy,
        "mode": defn.mode,
        "labels": label_names,
        "source_label_ids": chosen,
        "k": len(chosen),
        "n": int(n),
        "seed": int(seed),
        "val_fraction": defn.val_fraction,
        "val_from": defn.val_from,
        "transforms": list(defn.transforms),
        "draw": defn.draw,
        "test_mode": defn.test,
        "source": loaded.source_manifest,
        "counts": {split: _count(r, label_names) for split, r in rows.items()},
        "files": files,
        "checksum": subset_checksum(files, defn),
    }
    _write_dir(Path(out_dir), payload, manifest)
    return manifest


def subset_checksum(files: dict[str, str], defn: DatasetDefinition) -> str:
    """sha256 of the three file checksums (hex) concatenated in the order train, val, test,
    followed -- when val_from, transforms or draw differ from their defaults -- by those settings as
    sorted JSON: how the text was made is part of what a cell trained on, even where a transform
    happened to change no row (a subset drawn before these settings keeps its checksum)."""
    text = "".join(files.values())
    recipe = {"val_from": defn.val_from, "transforms": list(defn.transforms), "draw": defn.draw}
    settings = {key: value for key, value in recipe.items() if value != schema_default(f"data.{key}")}
    if settings:
        text += json.dumps(settings, sort_keys=True)
    return _sha256(text.encode("utf-8"))


def _write_dir(out_dir: Path, payload: dict[str, bytes], manifest: dict) -> None:
    """Write the subset into a temp dir beside `out_dir`, then swap it into place."""
    out_dir = out_dir.absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    trash: Path | None = None
    try:
        for split, data in payload.items():
            with atomic.atomic_path(tmp / f"{split}.jsonl") as p:
                p.write_bytes(data)
        atomic.write_json(tmp / "manifest.json", manifest)  # last
        # mkdtemp/mkstemp create 0700/0600; give the subset the usual umask permissions
        umask = os.umask(0)
        os.umask(umask)
        for child in tmp.iterdir():
            child.chmod(0o666 & ~umask)
        tmp.chmod(0o777 & ~umask)
        if out_dir.is_dir() and not out_dir.is_symlink():
            trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
            os.replace(out_dir, trash / "old")
        elif out_dir.exists() or out_dir.is_symlink():
            raise DataError(f"{out_dir}: exists and is not a directory; expected a subset directory")
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if trash is not None and (trash / "old").exists() and not out_dir.exists():
            os.replace(trash / "old", out_dir)  # put the previous subset back
        raise
    finally:
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
