"""A table definition's local `path:`: which files hold which split, in which format, with which columns.

Nothing is loaded here: `find_local_files` maps split names to files, `read_header` reads the
column names for the config-time check, `sha256_file` checksums a file for the manifest.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from emogrid.errors import DataError
from emogrid.study.dataset_definition import DatasetDefinition

FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "json", ".json": "json",
           ".parquet": "parquet"}


def find_local_files(defn: DatasetDefinition) -> tuple[str, dict[str, list[Path]]]:
    """(format, {source split name: [files]}) of a local `path:`; DataError if unusable."""
    name = defn.name
    raw = Path(defn.path).expanduser()
    if not raw.exists():
        raise DataError(f"datasets.{name}.path: {raw} does not exist")
    fmt = defn.format
    if raw.is_file():
        files = {"train": [raw]}
    else:
        files = {}
        for p in sorted(raw.iterdir()):
            if p.is_file() and p.suffix.lower() in FORMATS and not p.name.startswith("."):
                if fmt and FORMATS[p.suffix.lower()] != fmt and not (fmt == "tsv" and p.suffix == ".txt"):
                    continue
                files.setdefault(p.stem, []).append(p)
        if not files:
            raise DataError(f"datasets.{name}.path: {raw} holds no data files "
                            f"(expected {', '.join(sorted(FORMATS))} files named after their split)")
    kinds = {FORMATS.get(p.suffix.lower()) for fs in files.values() for p in fs}
    if fmt is None:
        if None in kinds or len(kinds) != 1:
            raise DataError(f"datasets.{name}.path: cannot tell the format of {raw} (suffixes "
                            f"{sorted({p.suffix for fs in files.values() for p in fs})}); set datasets.{name}.format")
        fmt = kinds.pop()
    return fmt, files


def read_header(defn: DatasetDefinition) -> dict[str, list[str]]:
    """Column names per local file without loading it (config-time check); {} when not cheap."""
    if not defn.path or defn.kind != "table":
        return {}
    fmt, files = find_local_files(defn)
    out = {}
    for fs in files.values():
        for p in fs:
            if fmt in ("csv", "tsv"):
                if not defn.header:
                    out[str(p)] = list(defn.columns or [])
                    continue
                with open(p, encoding="utf-8", errors="replace", newline="") as fh:
                    line = fh.readline().rstrip("\r\n")
                out[str(p)] = line.split("\t") if fmt == "tsv" else next(csv.reader([line]), [])
            elif fmt == "parquet":
                import pyarrow.parquet as pq

                out[str(p)] = list(pq.read_schema(p).names)
            else:
                import json

                with open(p, encoding="utf-8", errors="replace") as fh:
                    first = fh.readline()
                try:
                    row = json.loads(first)
                except ValueError:
                    continue  # a JSON array file: checked when loaded
                if isinstance(row, dict):
                    out[str(p)] = list(row)
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
