"""Read a dataset definition through `datasets.load_dataset` into emogrid's splits.

Every source goes through `datasets.load_dataset`: hub ids (`hub_dataset`, the one place a
hub dataset is fetched, so a pre-downloaded snapshot can be swapped in) and local files
through the packaged `csv` / `json` / `parquet` builders (`local_dataset`). Local builds are
cached in `cache_dir` (the data rule passes `results/.cache/datasets`; without one, a
temporary directory removed afterwards), never in the home directory, so a read-only
checkout or an offline node works.

The rows are then checked and mapped (text column, label column of ids / names / id lists,
or one 0/1 column per label) into `emogrid.datasets.splits.Split`s; every problem is a DataError naming
the dataset, the config key and what the column holds.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from emogrid.errors import DataError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "json", ".json": "json",
           ".parquet": "parquet"}
BUILDER = {"csv": "csv", "tsv": "csv", "json": "json", "parquet": "parquet"}


def _import_datasets():
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - a dependency of emogrid
        raise DataError(f"loading datasets needs the 'datasets' package ({err})",
                        hint="pip install datasets") from None
    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity_error()
    return datasets


def hub_dataset(hub: dict, *, where: str, hint: str | None = None, cache_dir=None):
    """`datasets.load_dataset(id, config, revision=...)`: the only hub access of emogrid.

    With `snapshot` (a repo fetched by emogrid.fetch) the same call reads that folder instead:
    `datasets` takes the configs and splits from its card, offline."""
    datasets = _import_datasets()
    if hub.get("snapshot"):
        try:
            # the snapshot's arrow build goes to cache_dir (results/.cache/datasets), like
            # local files: never the home directory of a compute node
            with _cache(cache_dir) as cache:
                return datasets.load_dataset(hub["snapshot"], hub.get("config"), cache_dir=cache,
                                             keep_in_memory=True)
        except Exception as err:  # noqa: BLE001 - a broken or partial snapshot
            raise DataError(f"cannot load {where} from its fetched snapshot {hub['snapshot']}: "
                            f"{type(err).__name__}: {err}",
                            hint="delete results/fetch/datasets/<name>.json and rerun to fetch it again") from None
    kwargs: dict[str, Any] = {}
    if hub.get("revision"):
        kwargs["revision"] = hub["revision"]
    try:
        return datasets.load_dataset(hub["id"], hub.get("config"), **kwargs)
    except Exception as err:  # network, auth, unknown id or config: all fixable by the user
        raise DataError(
            f"cannot load {where}: {type(err).__name__}: {err}",
            hint=hint or "without internet, download it once (HF_HUB_OFFLINE=0) or point path: at local files",
        ) from None


@contextlib.contextmanager
def _cache(cache_dir):
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        yield str(cache_dir)
        return
    tmp = tempfile.mkdtemp(prefix="emogrid-datasets-")
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _pandas_error(err: BaseException) -> BaseException:
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if type(err).__module__.startswith("pandas") or isinstance(err, UnicodeDecodeError):
            return err
        err = err.__cause__ or err.__context__
    return None


def local_dataset(data_files: dict[str, list[str]], fmt: str, *, where: str, cache_dir=None,
                  header: bool = True, columns: list[str] | None = None, string_features: list[str] | None = None):
    """Local files through the packaged builders; one split per key of `data_files`."""
    datasets = _import_datasets()
    kwargs: dict[str, Any] = {}
    if BUILDER[fmt] == "csv":
        kwargs.update(keep_default_na=False,  # "NA", "null", "nan" are texts, not missing values
                      skip_blank_lines=False)  # keeps row i on line i (+1 for a header)
        if fmt == "tsv":
            kwargs.update(delimiter="\t", quoting=csv.QUOTE_NONE)  # tweets and comments hold quotes
        if not header:
            kwargs.update(header=None, column_names=list(columns or []))
        if string_features:
            kwargs["features"] = datasets.Features({c: datasets.Value("string") for c in string_features})
    with _cache(cache_dir) as cache:
        try:
            return datasets.load_dataset(BUILDER[fmt], data_files=data_files, cache_dir=cache,
                                         keep_in_memory=True, **kwargs)
        except Exception as err:
            cause = _pandas_error(err) or err
            msg = str(cause)
            files = [f for fs in data_files.values() for f in fs]
            m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
            if m and len(files) >= 1:
                raise DataError(f"{_guess_file(files, cause)}:{m.group(2)}: expected {m.group(1)} "
                                f"{'tab-separated ' if fmt == 'tsv' else ''}columns, found {m.group(3)}"
                                ) from None
            if "No columns to parse" in msg:
                raise DataError(f"{_guess_file(files, cause)}: no rows") from None
            raise DataError(f"cannot read {where}: {type(cause).__name__}: {msg}") from None


def _guess_file(files: list[str], err) -> str:
    return files[0] if len(files) == 1 else " / ".join(files)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_utf8(path: Path, data: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 ({err.reason})") from None


# --------------------------------------------------------------------------- local files


def find_local_files(defn: dict) -> tuple[str, dict[str, list[Path]]]:
    """(format, {source split name: [files]}) of a local `path:`; DataError if unusable."""
    name = defn["name"]
    raw = Path(str(defn["path"])).expanduser()
    if not raw.exists():
        raise DataError(f"datasets.{name}.path: {raw} does not exist")
    fmt = defn.get("format")
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


def read_header(defn: dict) -> dict[str, list[str]]:
    """Column names per local file without loading it (config-time check); {} when not cheap."""
    if not defn.get("path") or defn.get("kind") != "table":
        return {}
    fmt, files = find_local_files(defn)
    out = {}
    for fs in files.values():
        for p in fs:
            if fmt in ("csv", "tsv"):
                if defn.get("header", True) is False:
                    out[str(p)] = list(defn.get("columns") or [])
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


# --------------------------------------------------------------------------- tables


def load_table(defn: dict, cache_dir=None):
    """A `kind: table` definition -> emogrid.datasets.splits.Loaded (train, test, names, source manifest)."""
    from emogrid.datasets.splits import Loaded

    name = defn["name"]
    if defn.get("path"):
        fmt, files = find_local_files(defn)
        if not defn.get("header", True) and not defn.get("columns"):
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
                               where=f"dataset '{name}' ({defn['path']})", cache_dir=cache_dir,
                               header=defn.get("header", True), columns=defn.get("columns"))
        dsd = {stem: loaded[safe] for safe, stem in stems.items()}
        source = {"kind": "local", "path": str(Path(str(defn["path"])).expanduser().resolve()),
                  "format": fmt, "files": checks}
        where = f"dataset '{name}' ({defn['path']})"
    elif defn.get("hub") and defn["hub"].get("id"):
        hub = defn["hub"]
        where = (
            f"dataset '{name}' (hub {hub['id']!r}"
            + (f" config {hub.get('config')!r}" if hub.get("config") else "")
            + ")"
        )
        dsd = hub_dataset(hub, where=where, cache_dir=cache_dir)
        source = {"kind": "hub", "id": hub["id"], "config": hub.get("config"), "revision": hub.get("revision"),
                  "commit": hub.get("commit")}
    else:
        raise DataError(f"datasets.{name}: needs path: (local files) or hub: {{id: ...}}")

    splits_cfg = defn.get("splits") or {}
    available = sorted(dsd)
    chosen: dict[str, str | None] = {}
    for role in ("train", "val", "test"):
        want = splits_cfg.get(role, {"train": "train", "val": "validation", "test": "test"}[role])
        explicit = want != {"train": "train", "val": "validation", "test": "test"}[role]
        if want is not None and want in dsd:
            chosen[role] = want
        elif role == "train" or (want is not None and explicit):
            raise DataError(f"{where}: no split {want!r} for datasets.{name}.splits.{role}; "
                            f"the source has {available}")
        else:
            chosen[role] = None

    names, convert = _label_mapping(defn, dsd, chosen, where)
    out = {role: _to_split(defn, dsd[src], src, where, names, convert) for role, src in chosen.items() if src}
    fingerprints = {src: str(getattr(dsd[src], "_fingerprint", "")) for src in chosen.values() if src}
    source["fingerprint"] = {k: v for k, v in fingerprints.items() if v} or None
    source["splits"] = dict(chosen)
    train, test = out["train"], out.get("test")
    if test is None:
        # resolve_dataset fills test_fraction / carve_seed (registry.CARVE_DEFAULTS) for every table dataset
        train, test, record = carve_test(train, float(defn["test_fraction"]), int(defn["carve_seed"]))
        source["splits"]["test"] = f"carved from {chosen['train']}"
        source["carved"] = {"test": record}
    return Loaded(train, test, source, names=names, val=out.get("val"))


def _feature(ds, column: str):
    try:
        return ds.features[column]
    except (KeyError, TypeError):
        return None


def _class_names(feature) -> list[str] | None:
    inner = getattr(feature, "feature", feature)
    names = getattr(inner, "names", None)
    return list(names) if names else None


def _require(ds, column: str, key: str, where: str, split: str) -> None:
    if column not in ds.column_names:
        raise DataError(f"{where} split {split!r}: no column {column!r} (datasets.{key}); "
                        f"its columns are {ds.column_names}")


def _label_mapping(defn: dict, dsd, chosen: dict, where: str):
    """(label names, converter row value -> tuple of ids) for the definition's label columns."""
    name = defn["name"]
    given = list(defn["label_names"]) if defn.get("label_names") else None
    train_src = chosen["train"]
    ds = dsd[train_src]
    if defn.get("label_columns"):
        cols = list(defn["label_columns"])
        for split in (s for s in chosen.values() if s):
            for c in cols:
                _require(dsd[split], c, f"{name}.label_columns", where, split)
        if given and len(given) != len(cols):
            raise DataError(f"datasets.{name}.label_names: {len(given)} names for {len(cols)} label_columns")
        return given or cols, None
    column = defn.get("label")
    if not column:
        raise DataError(f"datasets.{name}: needs label: (a column of class ids, class names or id lists) "
                        "or label_columns: (one 0/1 column per label)")
    for split in (s for s in chosen.values() if s):
        _require(dsd[split], column, f"{name}.label", where, split)
    feature = _feature(ds, column)
    feat_names = _class_names(feature)
    if feat_names:
        if given and len(given) != len(feat_names):
            raise DataError(f"datasets.{name}.label_names: {len(given)} names, but column {column!r} is a "
                            f"ClassLabel of {len(feat_names)}: {feat_names}")
        return given or feat_names, None
    # no ClassLabel: look at the values of every used split
    values = []
    for split in (s for s in chosen.values() if s):
        values += dsd[split].with_format(None)[column]
    flat = []
    is_list = False
    for v in values:
        if isinstance(v, (list, tuple)):
            is_list = True
            flat.extend(v)
        else:
            flat.append(v)
    kinds = {type(v).__name__ for v in flat}
    if kinds <= {"int", "bool"} or (kinds == {"str"} and all(str(v).strip().isdigit() for v in flat)):
        ids = sorted({int(v) for v in flat})
        if ids and ids[0] < 0:
            raise DataError(f"datasets.{name}.label: column {column!r} holds negative class id {ids[0]}")
        top = ids[-1] if ids else -1
        names = given or [str(i) for i in range(top + 1)]
        if top >= len(names):
            raise DataError(f"datasets.{name}.label_names: {len(names)} names, but column {column!r} holds "
                            f"class id {top} (ids must be 0-{len(names) - 1})")
        return names, ("ids", is_list)
    if kinds == {"str"}:
        distinct = sorted({str(v) for v in flat})
        if not is_list and len(distinct) > 100 and len(distinct) > 0.5 * len(flat):
            raise DataError(f"datasets.{name}.label: column {column!r} looks like free text ({len(distinct)} "
                            f"distinct values in {len(flat)} rows, e.g. {distinct[0][:60]!r}); expected class "
                            "ids or class names: is it the text column?")
        if given:
            unknown = [v for v in distinct if v not in given]
            if unknown:
                raise DataError(f"datasets.{name}.label: column {column!r} holds {unknown[:5]} not in "
                                f"datasets.{name}.label_names {given}")
            return given, ("names", is_list)
        return distinct, ("names", is_list)
    raise DataError(f"datasets.{name}.label: column {column!r} holds {sorted(kinds) or ['nothing']} values; "
                    "expected class ids (integers), class names (strings) or lists of them "
                    "(or label_columns: for one 0/1 column per label)")


_TRUE = {"1", "true", "True", "TRUE"}
_FALSE = {"0", "false", "False", "FALSE", ""}


def _to_split(defn: dict, ds, split: str, where: str, names: list[str], convert):
    from emogrid.datasets.splits import Split

    name = defn["name"]
    text_col, id_col = defn.get("text") or "text", defn.get("id")
    _require(ds, text_col, f"{name}.text", where, split)
    if id_col:
        _require(ds, id_col, f"{name}.id", where, split)
    cols = ds.with_format(None)[:]  # one dict of lists: fast, no per-row objects
    texts = cols[text_col]
    n = len(texts)
    ids = [str(x) for x in cols[id_col]] if id_col else [f"{split}-{i}" for i in range(n)]
    out = Split(f"{where} split {split!r}")
    index = {label: i for i, label in enumerate(names)}
    seen: dict[str, int] = {}
    label_cols = [cols[c] for c in defn.get("label_columns") or []]
    label_vals = cols[defn["label"]] if not label_cols else None
    for i in range(n):
        row = f"{where} split {split!r} row {i}"
        text = texts[i]
        if not isinstance(text, str):
            raise DataError(f"{row}: text column {text_col!r} holds {type(text).__name__} {text!r}; "
                            f"expected text (datasets.{name}.text)")
        if not text.strip():
            raise DataError(f"{row}: empty text in column {text_col!r}")
        if id_col:
            if ids[i] in seen:
                raise DataError(f"{row}: duplicate id {ids[i]!r} in column {id_col!r} (also row {seen[ids[i]]})")
            seen[ids[i]] = i
        if label_cols:
            labs = []
            for j, colvals in enumerate(label_cols):
                v = colvals[i]
                sv = str(v).strip() if not isinstance(v, bool) else ("1" if v else "0")
                if sv in _TRUE:
                    labs.append(j)
                elif sv not in _FALSE:
                    raise DataError(f"{row}: label column {defn['label_columns'][j]!r} holds {v!r}; "
                                    f"expected 0/1 or true/false (datasets.{name}.label_columns)")
        else:
            v = label_vals[i]
            items = v if isinstance(v, (list, tuple)) else [v]
            labs = []
            for item in items:
                if convert is None or convert[0] == "ids":
                    if isinstance(item, str) and not item.strip().isdigit():
                        raise DataError(f"{row}: label {item!r} in column {defn['label']!r} is not a class id")
                    if item is None or int(item) >= len(names) or int(item) < 0:
                        raise DataError(f"{row}: class id {item!r} in column {defn['label']!r} out of "
                                        f"range 0-{len(names) - 1}")
                    labs.append(int(item))
                else:
                    if str(item) not in index:
                        raise DataError(f"{row}: label {item!r} in column {defn['label']!r} is not one of {names}")
                    labs.append(index[str(item)])
            if not labs and not isinstance(v, (list, tuple)):
                raise DataError(f"{row}: no label in column {defn['label']!r}")
        out.texts.append(text)
        out.labels.append(tuple(sorted(set(labs))))
        out.ids.append(ids[i])
    if not out.ids:
        raise DataError(f"{where} split {split!r}: no rows")
    return out


def carve_test(train, fraction: float, seed: int):
    """Hold out `fraction` of train as the test split: stratified by label set, fixed seed."""
    from sklearn.model_selection import train_test_split

    from emogrid.datasets.splits import Split

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
