"""A table's columns -> `Split`s: the text, id and label columns checked and mapped to label ids.

Labels come as a column of class ids, class names or lists of either (a ClassLabel feature
names them), or as one 0/1 column per label (`label_columns`). Every problem is a DataError
naming the dataset, the config key and what the column holds.
"""

from __future__ import annotations

from emogrid.data.splits import Split
from emogrid.errors import DataError
from emogrid.study.dataset_definition import DatasetDefinition


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


def label_mapping(defn: DatasetDefinition, dsd, chosen: dict, where: str):
    """(label names, converter row value -> tuple of ids) for the definition's label columns."""
    name = defn.name
    given = list(defn.label_names) if defn.label_names else None
    train_src = chosen["train"]
    ds = dsd[train_src]
    if defn.label_columns:
        cols = list(defn.label_columns)
        for split in (s for s in chosen.values() if s):
            for c in cols:
                _require(dsd[split], c, f"{name}.label_columns", where, split)
        if given and len(given) != len(cols):
            raise DataError(f"datasets.{name}.label_names: {len(given)} names for {len(cols)} label_columns")
        return given or cols, None
    column = defn.label
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


def to_split(defn: DatasetDefinition, ds, split: str, where: str, names: list[str], convert):
    name = defn.name
    text_col, id_col = defn.text, defn.id
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
    label_cols = [cols[c] for c in defn.label_columns or []]
    label_vals = cols[defn.label] if not label_cols else None
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
                    raise DataError(f"{row}: label column {defn.label_columns[j]!r} holds {v!r}; "
                                    f"expected 0/1 or true/false (datasets.{name}.label_columns)")
        else:
            v = label_vals[i]
            items = v if isinstance(v, (list, tuple)) else [v]
            labs = []
            for item in items:
                if convert is None or convert[0] == "ids":
                    if isinstance(item, str) and not item.strip().isdigit():
                        raise DataError(f"{row}: label {item!r} in column {defn.label!r} is not a class id")
                    if item is None or int(item) >= len(names) or int(item) < 0:
                        raise DataError(f"{row}: class id {item!r} in column {defn.label!r} out of "
                                        f"range 0-{len(names) - 1}")
                    labs.append(int(item))
                else:
                    if str(item) not in index:
                        raise DataError(f"{row}: label {item!r} in column {defn.label!r} is not one of {names}")
                    labs.append(index[str(item)])
            if not labs and not isinstance(v, (list, tuple)):
                raise DataError(f"{row}: no label in column {defn.label!r}")
        out.texts.append(text)
        out.labels.append(tuple(sorted(set(labs))))
        out.ids.append(ids[i])
    if not out.ids:
        raise DataError(f"{where} split {split!r}: no rows")
    return out
