"""Data subsets: `emogrid prepare` builds one (k labels, n samples, seed) subset of a dataset.

Any dataset of `grid.datasets` (definitions: `emogrid.datasets.registry`; reading through
`datasets.load_dataset`: `emogrid.datasets.load`) goes through the selection rules below;
GoEmotions keeps its own source resolution (`EMOGRID_DATA_DIR`, `data.path`, the hub) and
taxonomies. The label lists are the dataset's (GoEmotions: the taxonomy), and the labels
never picked by frequency are its `exclude_labels` (GoEmotions: neutral).

Output (docs/CONTRACTS.md, "Data subset files"): `{train,val,test}.jsonl` + `manifest.json`
in one directory, built in a temp directory beside it and renamed into place, so a reader
sees either the old complete subset or the new complete one.

Sources (`resolve_source`): a local directory in the format of `shared/data/goemotions`
(`train.tsv dev.tsv test.tsv labels.txt`; columns text, comma-separated label ids, comment
id; no header), named by the environment variable `EMOGRID_DATA_DIR` (wins) or `data.path`;
the directory may hold the files directly or in a taxonomy subfolder (`original/`, `ekman/`).
Without a local directory: the dataset hub (`data.hub`, config `simplified`), imported lazily;
the Ekman taxonomy is then derived from the 28 labels with `EKMAN_MAPPING`.

Selection rules, all driven by one `numpy.random.Generator(seed)` in a fixed order:

* labels: the explicit `data.labels` (its first k, in the order given), else the k most
  frequent non-neutral labels of the train split (ties by label id), listed in id order.
  "Most frequent" counts the pool the mode draws from: single-label comments in single mode,
  comments carrying the label in multi mode.
* single mode: comments whose only label is one of the k. n is split across the labels as
  n // k each, the first n % k labels (manifest order) taking one more.
* multi mode: comments with at least one of the k labels, labels restricted to those k.
  Each label gets the same quota as above; comments are drawn round-robin (rarest label
  first in each round), each comment at most once, so label counts are approximately equal.
* val: round(n * val_fraction) rows (at least 1 when val_fraction > 0), allocated across
  the labels (the label a row was drawn for) by largest remainder, ties by label order.
* test: the official test split restricted the same way; `natural` keeps every such row,
  `balanced` draws the same number per label, capped by the rarest label.
* every split is shuffled; no other ordering.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emogrid import atomic
from emogrid.errors import ConfigError, DataError

ENV_VAR = "EMOGRID_DATA_DIR"
REQUIRED_FILES = ("train.tsv", "dev.tsv", "test.tsv", "labels.txt")
SPLIT_FILES = ("train.tsv", "dev.tsv", "test.tsv")
NEUTRAL = "neutral"

ORIGINAL_LABELS = [
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion",
    "curiosity", "desire", "disappointment", "disapproval", "disgust", "embarrassment",
    "excitement", "fear", "gratitude", "grief", "joy", "love", "nervousness", "optimism",
    "pride", "realization", "relief", "remorse", "sadness", "surprise", "neutral",
]  # fmt: skip
EKMAN_LABELS = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]

# The GoEmotions repository's ekman_mapping.json (+ neutral), Ekman group -> original labels.
EKMAN_MAPPING: dict[str, list[str]] = {
    "anger": ["anger", "annoyance", "disapproval"],
    "disgust": ["disgust"],
    "fear": ["fear", "nervousness"],
    "joy": ["joy", "amusement", "approval", "excitement", "gratitude", "love", "optimism",
            "relief", "pride", "admiration", "desire", "caring"],
    "sadness": ["sadness", "disappointment", "embarrassment", "grief", "remorse"],
    "surprise": ["surprise", "realization", "confusion", "curiosity"],
    "neutral": ["neutral"],
}  # fmt: skip

TAXONOMIES = {"original": ORIGINAL_LABELS, "ekman": EKMAN_LABELS}
DEFAULT_HUB = {"id": "google-research-datasets/go_emotions", "config": "simplified"}
HUB_SPLITS = {"train.tsv": "train", "dev.tsv": "validation", "test.tsv": "test"}


# --------------------------------------------------------------------------- taxonomy


def taxonomy_labels(taxonomy: str) -> list[str]:
    """Label names in id order: original (28, neutral = 27) or ekman (7, neutral = 4)."""
    try:
        return list(TAXONOMIES[taxonomy])
    except (KeyError, TypeError):
        raise ConfigError(
            f"data.taxonomy: expected one of {sorted(TAXONOMIES)}, got {taxonomy!r}"
        ) from None


def ekman_id_map() -> list[int]:
    """original label id -> ekman label id."""
    group_of = {orig: group for group, origs in EKMAN_MAPPING.items() for orig in origs}
    return [EKMAN_LABELS.index(group_of[name]) for name in ORIGINAL_LABELS]


# --------------------------------------------------------------------------- source


@dataclass(frozen=True)
class Source:
    """Where the data comes from: a local directory (files checked to exist) or the hub."""

    kind: str  # "local" | "hub"
    taxonomy: str
    origin: str  # "EMOGRID_DATA_DIR" | "data.path" | "data.hub"
    path: Path | None = None  # the directory holding train.tsv ... (local)
    hub_id: str | None = None
    hub_config: str | None = None
    hub_revision: str | None = None
    hub_snapshot: str | None = None  # a fetched snapshot of the hub repo (emogrid.fetch)
    hub_commit: str | None = None

    def describe(self) -> str:
        if self.kind == "local":
            return f"{self.path} (from {self.origin})"
        return f"dataset hub {self.hub_id!r} config {self.hub_config!r}"


def resolve_source(data_cfg: dict) -> Source:
    """Pick the data source without reading the data: `EMOGRID_DATA_DIR`, else `data.path`, else the hub.

    A local directory may hold the four files directly or in a subfolder named after the
    taxonomy (the subfolder wins when both exist). Raises DataError naming the path and
    where it came from when it is missing, unreadable, incomplete, or its labels.txt does
    not match `data.taxonomy`.
    """
    taxonomy = _setting(data_cfg, "taxonomy")
    expected = taxonomy_labels(taxonomy)
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        raw, origin = env, f"environment variable {ENV_VAR}"
    elif data_cfg.get("path"):
        raw, origin = str(data_cfg["path"]), "data.path"
    else:
        hub = {**DEFAULT_HUB, **(data_cfg.get("hub") or {})}
        return Source("hub", taxonomy, "data.hub", hub_id=hub["id"], hub_config=hub["config"],
                      hub_revision=hub.get("revision"), hub_snapshot=hub.get("snapshot"),
                      hub_commit=hub.get("commit"))

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
    return Source("local", taxonomy, origin, path=directory)


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


# --------------------------------------------------------------------------- loading


@dataclass
class Split:
    """One split as parallel lists; `labels[i]` is a tuple of label ids, ascending."""

    name: str  # where it came from, for messages: the file path or the hub split
    texts: list[str] = field(default_factory=list)
    labels: list[tuple[int, ...]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_tsv(path: Path, n_labels: int, data: bytes | None = None, cache_dir=None) -> Split:
    """Read one GoEmotions TSV (text, comma-separated label ids, id) through `datasets`; DataError on bad rows."""
    return load_goemotions_tsv({"split": path}, n_labels, {str(path): data} if data else None, cache_dir)["split"]


GOEMOTIONS_COLUMNS = ["text", "labels", "id"]


def load_goemotions_tsv(files: dict[str, Path], n_labels: int, contents: dict[str, bytes] | None = None,
                        cache_dir=None) -> dict[str, Split]:
    """GoEmotions TSV files (headerless: text, label ids, id) -> validated Splits, one per key.

    Read by `datasets.load_dataset("csv", ...)` (tab-separated, no quoting: texts contain
    quotes of every kind; every column a string, "NA" stays text); every row is then checked
    and a problem reported as `file:line: what was expected`.
    """
    from emogrid.datasets.load import check_utf8, local_dataset

    for path in files.values():
        data = (contents or {}).get(str(path))
        if data is None:
            try:
                data = Path(path).read_bytes()
            except OSError as err:
                raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
        check_utf8(Path(path), data)
        if not data.strip(b"\n"):
            raise DataError(f"{path}: no rows; expected text, label ids, id on each line")
        # The column count of every line, before the table reader pads short rows with "".
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        for lineno, line in enumerate(lines, 1):
            found = line.count(b"\t") + 1
            if found != 3:
                raise DataError(
                    f"{path}:{lineno}: expected 3 tab-separated columns (text, label ids, id), found {found}"
                )
    keys = {f"split{i}": key for i, key in enumerate(files)}  # split names `datasets` accepts
    dsd = local_dataset({safe: [str(files[key])] for safe, key in keys.items()}, "tsv",
                        where=" / ".join(map(str, files.values())), cache_dir=cache_dir,
                        header=False, columns=GOEMOTIONS_COLUMNS, string_features=GOEMOTIONS_COLUMNS)
    return {key: _validate_goemotions(Path(files[key]), dsd[safe].with_format(None)[:], n_labels)
            for safe, key in keys.items()}


def _validate_goemotions(path: Path, cols: dict, n_labels: int) -> Split:
    split = Split(str(path))
    seen: dict[str, int] = {}
    for row, (text_col, label_col, id_col) in enumerate(zip(cols["text"], cols["labels"], cols["id"])):
        lineno = row + 1  # headerless, unquoted, blank lines kept: row i is line i + 1
        present = sum(c is not None for c in (text_col, label_col, id_col))
        if present != 3:
            raise DataError(
                f"{path}:{lineno}: expected 3 tab-separated columns (text, label ids, id), found {present}"
            )
        if not text_col.strip():
            raise DataError(f"{path}:{lineno}: empty text; expected the comment text in column 1")
        cid = id_col.strip()
        if not cid:
            raise DataError(f"{path}:{lineno}: empty comment id; expected an id in column 3")
        if cid in seen:
            raise DataError(f"{path}:{lineno}: duplicate comment id {cid!r} (also line {seen[cid]})")
        seen[cid] = lineno
        ids: list[int] = []
        for part in label_col.split(","):
            part = part.strip()
            if not part.isdigit() or not part.isascii():
                raise DataError(
                    f"{path}:{lineno}: label ids must be comma-separated integers, got {label_col!r}"
                )
            value = int(part)
            if value >= n_labels:
                raise DataError(
                    f"{path}:{lineno}: label id {value} out of range; labels.txt has "
                    f"{n_labels} labels (ids 0-{n_labels - 1})"
                )
            ids.append(value)
        split.texts.append(text_col)
        split.labels.append(tuple(sorted(set(ids))))
        split.ids.append(cid)
    if not split.ids:
        raise DataError(f"{path}: no rows; expected text, label ids, id on each line")
    return split


def _render_tsv(split: Split) -> bytes:
    """The split in the local file format (used to checksum hub data comparably)."""
    out = [
        f"{t}\t{','.join(map(str, labs))}\t{i}\n"
        for t, labs, i in zip(split.texts, split.labels, split.ids)
    ]
    return "".join(out).encode("utf-8")


@dataclass
class Loaded:
    train: Split
    test: Split
    source_manifest: dict
    names: list[str] | None = None  # label names in id order (None: the GoEmotions taxonomy)
    val: Split | None = None  # the source's own validation split, read and checked (subsets
    #                           draw their validation rows from the n examples, see above)


def load_source(source: Source, need: tuple[str, ...] = ("train.tsv", "test.tsv"), cache_dir=None) -> Loaded:
    """Read and validate all three splits (dev.tsv too); checksum the three split files."""
    n_labels = len(taxonomy_labels(source.taxonomy))
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
            files[name] = _sha256(data)
            contents[str(path)] = data
        splits = load_goemotions_tsv({name: source.path / name for name in SPLIT_FILES}, n_labels,
                                     contents, cache_dir)
        manifest = {"kind": "local", "path": str(source.path), "files": files}
        return Loaded(splits["train.tsv"], splits["test.tsv"], manifest, val=splits["dev.tsv"])
    return _load_hub(source, cache_dir)


def _load_hub(source: Source, cache_dir=None) -> Loaded:
    from emogrid.datasets.load import hub_dataset

    dsd = hub_dataset({"id": source.hub_id, "config": source.hub_config, "revision": source.hub_revision,
                       "snapshot": source.hub_snapshot},
                      where=source.describe(),
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
        files[name] = _sha256(_render_tsv(split))
    manifest = {
        "kind": "hub",
        "id": source.hub_id,
        "config": source.hub_config,
        "revision": source.hub_revision,
        "commit": source.hub_commit,
        "fingerprint": fingerprints or None,
        "files": files,
    }
    return Loaded(splits["train.tsv"], splits["test.tsv"], manifest, val=splits["dev.tsv"])


def _hub_label_names(ds: Any) -> list[str] | None:
    try:
        feature = ds.features["labels"]
        inner = getattr(feature, "feature", feature)
        names = getattr(inner, "names", None)
        return list(names) if names else None
    except Exception:
        return None


# --------------------------------------------------------------------------- selection


def _setting(data_cfg: dict, key: str) -> Any:
    """`data_cfg[key]`, else the schema's `data.<key>` default: a dataset definition from
    `emogrid.datasets.registry` is complete, a hand-made one (tests, `emogrid prepare`) may not be."""
    from emogrid.config_schema import schema_default

    value = data_cfg.get(key)
    return schema_default(f"data.{key}") if value is None else value


def _settings(data_cfg: dict) -> dict:
    kind = data_cfg.get("kind") or "goemotions"  # a definition's kind; the `data:` section is GoEmotions
    cfg = {
        "name": _setting(data_cfg, "name"),
        "kind": kind,
        "taxonomy": _setting(data_cfg, "taxonomy") if kind == "goemotions" else None,
        "mode": _setting(data_cfg, "mode"),
        "labels": data_cfg.get("labels"),
        "val_fraction": float(_setting(data_cfg, "val_fraction")),
        "test": _setting(data_cfg, "test"),
        "exclude_labels": list(data_cfg.get("exclude_labels", [NEUTRAL] if kind == "goemotions" else [])),
    }
    if kind not in ("goemotions", "table"):
        raise ConfigError(f"datasets.{cfg['name']}.kind: expected 'goemotions' or 'table', got {kind!r}")
    if cfg["mode"] not in ("single", "multi"):
        raise ConfigError(f"data.mode: expected 'single' or 'multi', got {cfg['mode']!r}")
    if cfg["test"] not in ("natural", "balanced"):
        raise ConfigError(f"data.test: expected 'natural' or 'balanced', got {cfg['test']!r}")
    if not 0.0 <= cfg["val_fraction"] < 1.0:
        raise ConfigError(f"data.val_fraction: expected a number in [0, 1), got {cfg['val_fraction']}")
    if kind == "goemotions":
        taxonomy_labels(cfg["taxonomy"])
    return cfg


def label_frequencies(split: Split, mode: str) -> dict[int, int]:
    """label id -> number of comments in the pool of `mode` (single-label rows / rows carrying it)."""
    counts: dict[int, int] = {}
    for labs in split.labels:
        if mode == "single" and len(labs) != 1:
            continue
        for lab in labs:
            counts[lab] = counts.get(lab, 0) + 1
    return counts


def select_labels(train: Split, taxonomy: str | list[str], mode: str, k: int, explicit: list[str] | None,
                  exclude: list[str] | tuple[str, ...] = (NEUTRAL,), dataset: str | None = None) -> list[int]:
    """The k label ids of the subset (see module docstring).

    `taxonomy` is a GoEmotions taxonomy name or the dataset's label names in id order;
    `exclude` names labels never picked by frequency (GoEmotions' neutral).
    """
    names = taxonomy_labels(taxonomy) if isinstance(taxonomy, str) else list(taxonomy)
    what = f"taxonomy {taxonomy!r}" if isinstance(taxonomy, str) else f"dataset {dataset!r}"
    key = "data.labels" if isinstance(taxonomy, str) else f"datasets.{dataset}.labels"
    if k < 1:
        raise DataError(f"labels k = {k}: expected at least 1")
    if explicit:
        unknown = [x for x in explicit if x not in names]
        if unknown:
            raise DataError(f"{key}: unknown label(s) {unknown} for {what}; expected names from {names}")
        dupes = sorted({x for x in explicit if explicit.count(x) > 1})
        if dupes:
            raise DataError(f"{key}: {dupes} listed more than once")
        if k > len(explicit):
            raise DataError(f"labels k = {k} but {key} lists only {len(explicit)}: {list(explicit)}")
        return [names.index(x) for x in explicit[:k]]
    counts = label_frequencies(train, mode)
    candidates = [i for i, name in enumerate(names) if name not in exclude]
    if k > len(candidates):
        kind = f"non-{'/'.join(exclude)} labels" if exclude else "labels"
        raise DataError(f"labels k = {k}: {what} has only {len(candidates)} {kind}")
    ranked = sorted(candidates, key=lambda i: (-counts.get(i, 0), i))
    return sorted(ranked[:k])


def _quotas(total: int, k: int) -> list[int]:
    return [total // k + (1 if i < total % k else 0) for i in range(k)]


def _allocate(total: int, weights: list[int]) -> list[int]:
    """Split `total` proportionally to `weights` by largest remainder (ties: earlier first)."""
    s = sum(weights)
    if s == 0:
        return [0] * len(weights)
    exact = [total * w / s for w in weights]
    base = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - base[i]), i))
    for i in order[: total - sum(base)]:
        base[i] += 1
    return base


def _val_size(n: int, val_fraction: float) -> int:
    if val_fraction <= 0:
        return 0
    v = int(n * val_fraction + 0.5)
    return min(max(v, 1), n - 1)


def _too_few(problems: list[str], file: str, k: int, n: int, what: str) -> DataError:
    return DataError(
        f"{file}: too few {what} for k={k}, n={n}: " + "; ".join(problems),
        hint="lower the samples axis, pick other labels, or use fewer labels",
    )


def _draw_single(rng, split: Split, chosen: list[int], quotas: list[int] | None) -> list[list[int]]:
    """Per chosen label, row indices of single-label rows in draw order (quota or all)."""
    pools: list[list[int]] = [[] for _ in chosen]
    pos = {lab: j for j, lab in enumerate(chosen)}
    for i, labs in enumerate(split.labels):
        if len(labs) == 1 and labs[0] in pos:
            pools[pos[labs[0]]].append(i)
    out = []
    for j, pool in enumerate(pools):
        size = len(pool) if quotas is None else quotas[j]
        picks = rng.choice(len(pool), size=size, replace=False) if size else []
        out.append([pool[int(p)] for p in picks])
    return out


def _multi_candidates(rng, split: Split, chosen: list[int]) -> list[list[int]]:
    cands: list[list[int]] = [[] for _ in chosen]
    pos = {lab: j for j, lab in enumerate(chosen)}
    for i, labs in enumerate(split.labels):
        for lab in labs:
            if lab in pos:
                cands[pos[lab]].append(i)
    return [[c[int(p)] for p in rng.permutation(len(c))] for c in cands]


def _round_robin(cands: list[list[int]], quotas: list[int], strict: bool) -> tuple[list[list[int]], int | None]:
    """Draw comments round-robin, rarest label first; each comment once.

    Returns per-label drawn rows and, if `strict` and a label ran dry, its position.
    """
    order = sorted(range(len(cands)), key=lambda j: (len(cands[j]), j))
    taken: set[int] = set()
    ptr = [0] * len(cands)
    drawn: list[list[int]] = [[] for _ in cands]
    active = [j for j in order if quotas[j] > 0]
    while active:
        still = []
        for j in active:
            c = cands[j]
            while ptr[j] < len(c) and c[ptr[j]] in taken:
                ptr[j] += 1
            if ptr[j] == len(c):
                if strict:
                    return drawn, j
                continue
            taken.add(c[ptr[j]])
            drawn[j].append(c[ptr[j]])
            ptr[j] += 1
            if len(drawn[j]) < quotas[j]:
                still.append(j)
        active = still
    return drawn, None


def _rows(split: Split, indices, chosen: list[int], rng) -> list[dict]:
    pos = {lab: j for j, lab in enumerate(chosen)}
    order = [indices[int(p)] for p in rng.permutation(len(indices))]
    return [
        {
            "id": split.ids[i],
            "text": split.texts[i],
            "labels": sorted(pos[lab] for lab in split.labels[i] if lab in pos),
        }
        for i in order
    ]


def build_subset(loaded: Loaded, cfg: dict, k: int, n: int, seed: int) -> tuple[list[int], dict[str, list[dict]]]:
    """Select labels and draw train/val/test rows. Pure: no files written."""
    import numpy as np

    mode, train, test = cfg["mode"], loaded.train, loaded.test
    names = loaded.names or taxonomy_labels(cfg["taxonomy"])
    chosen = select_labels(train, loaded.names or cfg["taxonomy"], mode, k, cfg["labels"],
                           cfg["exclude_labels"], dataset=cfg["name"])
    k = len(chosen)
    if n < k:
        raise DataError(f"samples n = {n} is smaller than labels k = {k}; expected at least one example per label")
    quotas = _quotas(n, k)
    rng = np.random.default_rng(seed)
    counts = label_frequencies(train, mode)
    unit = "comments" if cfg.get("kind", "goemotions") == "goemotions" else "examples"
    what = f"single-label {unit}" if mode == "single" else unit
    short = [
        f"label '{names[lab]}' has {counts.get(lab, 0)} {what} in the train split, {q} needed"
        for lab, q in zip(chosen, quotas)
        if counts.get(lab, 0) < q
    ]
    if short:
        raise _too_few(short, train.name, k, n, what)

    if mode == "single":
        drawn = _draw_single(rng, train, chosen, quotas)
    else:
        drawn, dry = _round_robin(_multi_candidates(rng, train, chosen), quotas, strict=True)
        if dry is not None:
            lab = chosen[dry]
            raise _too_few(
                [
                    f"label '{names[lab]}' has {counts.get(lab, 0)} {unit} in the train split, but "
                    f"only {len(drawn[dry])} are left after the other labels' draws, {quotas[dry]} needed"
                ],
                train.name, k, n, what,
            )

    val_sizes = _allocate(_val_size(n, cfg["val_fraction"]), quotas)
    val_idx = [i for d, v in zip(drawn, val_sizes) for i in d[:v]]
    train_idx = [i for d, v in zip(drawn, val_sizes) for i in d[v:]]

    if mode == "single":
        per_label = _draw_single(rng, test, chosen, None)
        if cfg["test"] == "balanced":
            cap = min(len(p) for p in per_label)
            per_label = [p[:cap] for p in per_label]
    else:
        cands = _multi_candidates(rng, test, chosen)
        if cfg["test"] == "balanced":
            cap = min(len(c) for c in cands)
            per_label, _ = _round_robin(cands, [cap] * k, strict=False)
        else:
            seen: set[int] = set()
            per_label = [[i for i in c if not (i in seen or seen.add(i))] for c in cands]
    test_idx = [i for p in per_label for i in p]
    present = {lab for i in test_idx for lab in test.labels[i]}
    empty = [names[lab] for lab in chosen if lab not in present]
    if empty:
        raise DataError(f"{test.name}: no {what} for label(s) {empty} in the test split; expected at least one each")

    rows = {
        "train": _rows(train, train_idx, chosen, rng),
        "val": _rows(train, val_idx, chosen, rng),
        "test": _rows(test, test_idx, chosen, rng),
    }
    return chosen, rows


def _count(rows: list[dict], label_names: list[str]) -> dict[str, int]:
    c = [0] * len(label_names)
    for row in rows:
        for j in row["labels"]:
            c[j] += 1
    return dict(zip(label_names, c))


def _jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def load_dataset_definition(data_cfg: dict, cache_dir=None) -> Loaded:
    """Any dataset definition (emogrid.datasets.registry) -> its checked splits."""
    cfg = _settings(data_cfg)
    if cfg["kind"] == "goemotions":
        return load_source(resolve_source(data_cfg), cache_dir=cache_dir)
    from emogrid.datasets.load import load_table

    return load_table({**data_cfg, "name": cfg["name"]}, cache_dir=cache_dir)


def prepare_subset(data_cfg: dict, k: int, n: int, seed: int, out_dir: str | os.PathLike,
                   cache_dir: str | os.PathLike | None = None) -> dict:
    """Build the (k, n, seed) subset in `out_dir` (replaced as a whole); return the manifest.

    `data_cfg` is a dataset definition (`emogrid.datasets.registry.resolve_dataset`) or, as
    before datasets became an axis, the config's `data:` section (GoEmotions). `cache_dir`
    holds `datasets`' build of local files (None: a temporary directory).
    """
    cfg = _settings(data_cfg)
    loaded = load_dataset_definition(data_cfg, cache_dir)
    chosen, rows = build_subset(loaded, cfg, int(k), int(n), int(seed))
    names = loaded.names or taxonomy_labels(cfg["taxonomy"])
    label_names = [names[i] for i in chosen]

    payload = {split: _jsonl_bytes(r) for split, r in rows.items()}
    files = {f"{split}.jsonl": _sha256(b) for split, b in payload.items()}
    manifest = {
        "dataset": cfg["name"],
        "taxonomy": cfg["taxonomy"],
        "mode": cfg["mode"],
        "labels": label_names,
        "source_label_ids": chosen,
        "k": len(chosen),
        "n": int(n),
        "seed": int(seed),
        "val_fraction": cfg["val_fraction"],
        "test_mode": cfg["test"],
        "source": loaded.source_manifest,
        "counts": {split: _count(r, label_names) for split, r in rows.items()},
        "files": files,
        # sha256 of the three file checksums (hex), concatenated in the order train, val, test
        "checksum": _sha256("".join(files.values()).encode("ascii")),
    }
    _write_dir(Path(out_dir), payload, manifest)
    return manifest


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


# --------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="JSON", help="the config's data section, as JSON")
    parser.add_argument("--labels", required=True, type=int, metavar="K", help="number of labels k")
    parser.add_argument("--samples", required=True, type=int, metavar="N", help="number of examples n (train + val)")
    parser.add_argument("--seed", required=True, type=int, metavar="S", help="random seed of the draw")
    parser.add_argument("--out", required=True, metavar="DIR", help="subset directory to (re)write")
    parser.add_argument("--fetched", metavar="RECEIPT", default=None,
                        help="fetch receipt of the hub dataset (emogrid fetch): load its snapshot offline")
    parser.add_argument("--cache", metavar="DIR", default=None,
                        help="where `datasets` caches its build of local files (default: a temporary directory)")


def run(args: argparse.Namespace) -> int:
    try:
        data_cfg = json.loads(args.data)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--data: not valid JSON ({err}); expected the config's data section") from None
    if not isinstance(data_cfg, dict):
        raise ConfigError(f"--data: expected a JSON object (the config's data section), got {type(data_cfg).__name__}")
    if getattr(args, "fetched", None):
        from emogrid.fetch import read_receipt

        # a fetched hub snapshot (emogrid fetch): read offline; the manifest records its commit
        receipt = read_receipt(args.fetched)
        data_cfg["hub"] = {**(data_cfg.get("hub") or {}), "snapshot": receipt["snapshot"],
                           "commit": receipt["commit"]}
    manifest = prepare_subset(data_cfg, args.labels, args.samples, args.seed, args.out, cache_dir=args.cache)
    sizes = {split: sum(c.values()) for split, c in manifest["counts"].items()}
    print(
        f"prepared {args.out}: labels {', '.join(manifest['labels'])}; "
        + ", ".join(f"{s} {v}" for s, v in sizes.items())
        + (" (label counts)" if manifest["mode"] == "multi" else "")
    )
    return 0
