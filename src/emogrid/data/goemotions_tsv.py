"""GoEmotions TSV files <-> `Split`s: read and check the headerless local format, or render it.

The format of `shared/data/goemotions` (and of `emogrid.data.goemotions_copy`): no header; text,
comma-separated label ids, comment id. Every problem is a DataError `file:line: what was
expected`. Rendering gives hub rows the same bytes, so both are checksummed comparably.
"""

from __future__ import annotations

from pathlib import Path

from emogrid.data.reader import local_dataset
from emogrid.data.splits import Split
from emogrid.errors import DataError

GOEMOTIONS_COLUMNS = ["text", "labels", "id"]


def parse_tsv(path: Path, n_labels: int, data: bytes | None = None, cache_dir=None) -> Split:
    """Read one GoEmotions TSV (text, comma-separated label ids, id) through `datasets`; DataError on bad rows."""
    return load_goemotions_tsv({"split": path}, n_labels, {str(path): data} if data else None, cache_dir)["split"]


def load_goemotions_tsv(files: dict[str, Path], n_labels: int, contents: dict[str, bytes] | None = None,
                        cache_dir=None) -> dict[str, Split]:
    """GoEmotions TSV files (headerless: text, label ids, id) -> validated Splits, one per key.

    Read by `datasets.load_dataset("csv", ...)` (tab-separated, no quoting: texts contain
    quotes of every kind; every column a string, "NA" stays text); every row is then checked
    and a problem reported as `file:line: what was expected`.
    """
    for path in files.values():
        data = (contents or {}).get(str(path))
        if data is None:
            try:
                data = Path(path).read_bytes()
            except OSError as err:
                raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
        _check_utf8(Path(path), data)
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


def _check_utf8(path: Path, data: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 ({err.reason})") from None


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


def render_tsv(split: Split) -> bytes:
    """The split in the local file format (used to checksum hub data comparably)."""
    out = [
        f"{t}\t{','.join(map(str, labs))}\t{i}\n"
        for t, labs, i in zip(split.texts, split.labels, split.ids)
    ]
    return "".join(out).encode("utf-8")
