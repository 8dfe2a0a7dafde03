"""GoEmotions as a source: where it is (`resolve_source`) and reading it (`load_source`).

A local directory in the format of `shared/data/goemotions` (`train.tsv dev.tsv test.tsv
labels.txt`; `emogrid.data.goemotions_tsv`), named by the environment variable
`EMOGRID_DATA_DIR` (wins) or `data.path`; the directory may hold the files directly or in a
taxonomy subfolder (`original/`, `ekman/`). Without a local directory: the dataset hub
(`data.hub`, config `simplified`, through `emogrid.data.reader.hub_dataset`); the Ekman
taxonomy is then derived from the 28 labels (`emogrid.study.taxonomies.EKMAN_MAPPING`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emogrid.data.goemotions_tsv import load_goemotions_tsv, render_tsv
from emogrid.data.reader import hub_dataset
from emogrid.data.splits import Loaded, Split
from emogrid.errors import DataError
from emogrid.study.dataset_definition import DatasetDefinition, HubRef
from emogrid.study.taxonomies import ORIGINAL_LABELS, ekman_id_map, taxonomy_labels

ENV_VAR = "EMOGRID_DATA_DIR"
REQUIRED_FILES = ("train.tsv", "dev.tsv", "test.tsv", "labels.txt")
SPLIT_FILES = ("train.tsv", "dev.tsv", "test.tsv")
HUB_SPLITS = {"train.tsv": "train", "dev.tsv": "validation", "test.tsv": "test"}


@dataclass(frozen=True)
class GoEmotionsSource:
    """Where the data comes from: a local directory (files checked to exist) or the hub."""

    kind: str  # "local" | "hub"
    taxonomy: str
    origin: str  # "EMOGRID_DATA_DIR" | "data.path" | "data.hub"
    path: Path | None = None  # the directory holding train.tsv ... (local)
    hub: HubRef | None = None  # with its fetched snapshot, if any (emogrid.data.fetch)

    def describe(self) -> str:
        if self.kind == "local":
            return f"{self.path} (from {self.origin})"
        return f"dataset hub {self.hub.id!r} config {self.hub.config!r}"


def resolve_source(defn: DatasetDefinition) -> GoEmotionsSource:
    """Pick the data source without reading the data: `EMOGRID_DATA_DIR`, else `data.path`, else the hub.

    A local directory may hold the four files directly or in a subfolder named after the
    taxonomy (the subfolder wins when both exist). Raises DataError naming the path and
    where it came from when it is missing, unreadable, incomplete, or its labels.txt does
    not match `data.taxonomy`.
    """
    taxonomy = defn.taxonomy
    expected = taxonomy_labels(taxonomy)
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        raw, origin = env, f"environment variable {ENV_VAR}"
    elif defn.path:
        raw, origin = defn.path, "data.path"
    else:
        return GoEmotionsSource("hub", taxonomy, "data.hub", hub=defn.hub)

    base = Path(raw).expanduser()
    try:
        base = base.resolve()
    except OSError:
        pass
    if not base.is_dir():
        what = "does not exist" if not base.exists() else "is not a directory"
        raise DataError(f"data directory {base} (from {origin}) {what}")
    sub = base / taxonomy
    directory = sub if (sub / "train.tsv").is_file() else base
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        where = f"{base} or {sub}" if directory == base else str(directory)
        raise DataError(
            f"data directory {where} (from {origin}) is missing {', '.join(missing)}; "
            f"expected {' '.join(REQUIRED_FILES)}"
            + ("" if directory != base else f" (directly or in a '{taxonomy}/' subfolder)")
        )
    unreadable = [name for name in REQUIRED_FILES if not os.access(directory / name, os.R_OK)]
    if unreadable:
        raise DataError(
            f"data directory {directory} (from {origin}): cannot read {', '.join(unreadable)}"
        )
    labels_file = directory / "labels.txt"
    names = _read_labels(labels_file)
    if names != expected:
        raise DataError(
            f"{labels_file}: labels {names} do not match data.taxonomy {taxonomy!r}, which "
            f"expects {len(expected)} labels {expected} (from {origin})",
            hint="point at the directory holding original/ and ekman/, or set data.taxonomy",
        )
    return GoEmotionsSource("local", taxonomy, origin, path=directory)


def _read_labels(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read label names ({err})") from None
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    for lineno, name in enumerate(names, 1):
        if not name:
            raise DataError(f"{path}:{lineno}: empty label name; expected one name a line")
    if not names:
        raise DataError(f"{path}: no label names; expected one name a line in id order")
    seen: dict[str, int] = {}
    for lineno, name in enumerate(names, 1):
        if name in seen:
            raise DataError(f"{path}:{lineno}: duplicate label {name!r} (also line {seen[name]})")
        seen[name] = lineno
    return names


def load_source(source: GoEmotionsSource, cache_dir=None) -> Loaded:
    """Read and validate all three splits (dev.tsv too); checksum the three split files."""
    names = taxonomy_labels(source.taxonomy)
    if source.kind == "local":
        assert source.path is not None
        files: dict[str, str] = {}
        contents: dict[str, bytes] = {}
        for name in SPLIT_FILES:
            path = source.path / name
            try:
                data = path.read_bytes()
            except OSError as err:
                raise DataError(f"{path} (from {source.origin}): cannot read ({err.strerror or err})") from None
            files[name] = hashlib.sha256(data).hexdigest()
            contents[str(path)] = data
        splits = load_goemotions_tsv({name: source.path / name for name in SPLIT_FILES}, len(names),
                                     contents, cache_dir)
        manifest = {"kind": "local", "path": str(source.path), "files": files}
        return Loaded(splits["train.tsv"], splits["test.tsv"], manifest, names, val=splits["dev.tsv"])
    return _load_hub(source, cache_dir)


def _load_hub(source: GoEmotionsSource, cache_dir=None) -> Loaded:
    dsd = hub_dataset(source.hub, where=source.describe(),
                      hint=f"without internet, set {ENV_VAR} or data.path to a local copy", cache_dir=cache_dir)
    where = source.describe()
    convert = ekman_id_map() if source.taxonomy == "ekman" else None
    files: dict[str, str] = {}
    fingerprints: dict[str, str] = {}
    splits: dict[str, Split] = {}
    for name, hub_split in HUB_SPLITS.items():
        if hub_split not in dsd:
            raise DataError(f"{where}: no split {hub_split!r}; found {sorted(dsd)}")
        ds = dsd[hub_split]
        missing = [c for c in ("text", "labels", "id") if c not in ds.column_names]
        if missing:
            raise DataError(f"{where} split {hub_split!r}: missing columns {missing}; expected text, labels, id")
        names = _hub_label_names(ds)
        if names is not None and names != ORIGINAL_LABELS:
            raise DataError(f"{where}: label names {names} differ from the 28 GoEmotions labels {ORIGINAL_LABELS}")
        fp = getattr(ds, "_fingerprint", None)
        if fp:
            fingerprints[hub_split] = str(fp)
        split = Split(f"{where} split {hub_split!r}")
        columns = ds.with_format(None)[:]  # one dict of lists: fast, no per-row objects
        for row, (text, labs, cid) in enumerate(zip(columns["text"], columns["labels"], columns["id"])):
            where_row = f"{where} split {hub_split!r} row {row}"
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{where_row}: empty text")
            if not labs:
                raise DataError(f"{where_row}: no labels")
            ids = set()
            for lab in labs:
                if not isinstance(lab, int) or not 0 <= lab < len(ORIGINAL_LABELS):
                    raise DataError(f"{where_row}: label id {lab!r} out of range 0-{len(ORIGINAL_LABELS) - 1}")
                ids.add(convert[lab] if convert else lab)
            split.texts.append(text)
            split.labels.append(tuple(sorted(ids)))
            split.ids.append(str(cid))
        splits[name] = split
        files[name] = hashlib.sha256(render_tsv(split)).hexdigest()
    manifest = {
        "kind": "hub",
        "id": source.hub.id,
        "config": source.hub.config,
        "revision": source.hub.revision,
        "commit": source.hub.commit,
        "fingerprint": fingerprints or None,
        "files": files,
    }
    return Loaded(splits["train.tsv"], splits["test.tsv"], manifest, taxonomy_labels(source.taxonomy),
                  val=splits["dev.tsv"])


def _hub_label_names(ds: Any) -> list[str] | None:
    try:
        feature = ds.features["labels"]
        inner = getattr(feature, "feature", feature)
        names = getattr(inner, "names", None)
        return list(names) if names else None
    except Exception:
        return None
