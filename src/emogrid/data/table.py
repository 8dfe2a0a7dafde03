"""A `kind: table` dataset definition -> its checked splits (`load_table`), test carved if it has none.

Reads local files (`emogrid.data.local_files`) or a hub id through `datasets.load_dataset`
(`emogrid.data.reader`), maps the configured split names, and turns the columns into
`Split`s (`emogrid.data.table_columns`); the source manifest records checksums or hub
fingerprints and the split mapping (docs/CONTRACTS.md).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from emogrid.data.local_files import find_local_files, sha256_file
from emogrid.data.reader import hub_dataset, local_dataset
from emogrid.data.splits import Loaded, Split
from emogrid.data.table_columns import label_mapping, to_split
from emogrid.errors import DataError
from emogrid.study.dataset_definition import DEFAULT_SPLITS, DatasetDefinition


def load_table(defn: DatasetDefinition, cache_dir=None) -> Loaded:
    """A `kind: table` definition -> Loaded (train, test, label names, source manifest)."""
    name = defn.name
    if defn.path:
        fmt, files = find_local_files(defn)
        if not defn.header and not defn.columns:
            raise DataError(f"datasets.{name}.columns: a file without a header (header: false) needs "
                            "its column names in order, e.g. columns: [text, label]")
        checks = {}
        for fs in files.values():
            for p in fs:
                checks[p.name] = sha256_file(p)
        # file stems (2018-E-c-En-train) are not split names `datasets` accepts: load under
        # safe names, then give the splits their file names back
        stems = dict(zip((f"split{i}" for i in range(len(files))), files))
        loaded = local_dataset({safe: [str(p) for p in files[stem]] for safe, stem in stems.items()}, fmt,
                               where=f"dataset '{name}' ({defn.path})", cache_dir=cache_dir,
                               header=defn.header, columns=list(defn.columns) if defn.columns else None)
        dsd = {stem: loaded[safe] for safe, stem in stems.items()}
        source = {"kind": "local", "path": str(Path(defn.path).expanduser().resolve()),
                  "format": fmt, "files": checks}
        where = f"dataset '{name}' ({defn.path})"
    elif defn.hub and defn.hub.id:
        hub = defn.hub
        where = f"dataset '{name}' (hub {hub.id!r}" + (f" config {hub.config!r}" if hub.config else "") + ")"
        dsd = hub_dataset(hub, where=where, cache_dir=cache_dir)
        source = {"kind": "hub", "id": hub.id, "config": hub.config, "revision": hub.revision, "commit": hub.commit}
    else:
        raise DataError(f"datasets.{name}: needs path: (local files) or hub: {{id: ...}}")

    available = sorted(dsd)
    chosen: dict[str, str | None] = {}
    for role in ("train", "val", "test"):
        want = defn.splits[role]
        explicit = want != DEFAULT_SPLITS[role]
        if want is not None and want in dsd:
            chosen[role] = want
        elif role == "train" or (want is not None and explicit):
            raise DataError(f"{where}: no split {want!r} for datasets.{name}.splits.{role}; "
                            f"the source has {available}")
        else:
            chosen[role] = None

    names, convert = label_mapping(defn, dsd, chosen, where)
    out = {role: to_split(defn, dsd[src], src, where, names, convert) for role, src in chosen.items() if src}
    fingerprints = {src: str(getattr(dsd[src], "_fingerprint", "")) for src in chosen.values() if src}
    source["fingerprint"] = {k: v for k, v in fingerprints.items() if v} or None
    source["splits"] = dict(chosen)
    train, test = out["train"], out.get("test")
    if test is None:
        train, test, record = carve_test(train, defn.test_fraction, defn.carve_seed)
        source["splits"]["test"] = f"carved from {chosen['train']}"
        source["carved"] = {"test": record}
    return Loaded(train, test, source, names=names, val=out.get("val"))


def carve_test(train, fraction: float, seed: int):
    """Hold out `fraction` of train as the test split: stratified by label set, fixed seed."""
    from sklearn.model_selection import train_test_split

    n = len(train)
    if not 0 < fraction < 1:
        raise DataError(f"test_fraction: expected a number in (0, 1), got {fraction}")
    strata = [labs[0] if len(labs) == 1 else -1 for labs in train.labels]
    counts: dict[int, int] = {}
    for s in strata:
        counts[s] = counts.get(s, 0) + 1
    n_test = max(1, int(round(n * fraction)))
    stratified = min(counts.values()) >= 2 and n_test >= len(counts) and n - n_test >= len(counts)
    idx = list(range(n))
    keep, held = train_test_split(idx, test_size=n_test, random_state=seed,
                                  stratify=strata if stratified else None)

    def take(indices, label):
        s = Split(f"{train.name} ({label})")
        for i in sorted(indices):
            s.texts.append(train.texts[i])
            s.labels.append(train.labels[i])
            s.ids.append(train.ids[i])
        return s

    record = {
        "from": train.name,
        "fraction": fraction,
        "seed": seed,
        "rows": len(held),
        "stratified": stratified,
        "method": "sklearn.model_selection.train_test_split, stratified by single label"
        if stratified
        else "sklearn.model_selection.train_test_split (too few rows per label to stratify)",
        "ids_sha256": hashlib.sha256("\n".join(sorted(train.ids[i] for i in held)).encode()).hexdigest(),
    }
    return take(keep, "train without the carved test"), take(held, "carved test"), record
