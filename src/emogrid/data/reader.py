"""The one door to `datasets.load_dataset`: hub ids (`hub_dataset`) and local files (`local_dataset`).

`hub_dataset` is the only place a hub dataset is fetched, so a pre-downloaded snapshot can be
swapped in. Local files go through the packaged `csv` / `json` / `parquet` builders, cached in
`cache_dir` (the data rule passes `results/.cache/datasets`; without one, a temporary directory
removed afterwards), never in the home directory, so a read-only checkout or an offline node works.
"""

from __future__ import annotations

import contextlib
import csv
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from emogrid.errors import DataError
from emogrid.study.dataset_definition import HubRef

BUILDER = {"csv": "csv", "tsv": "csv", "json": "json", "parquet": "parquet"}  # format -> builder


def _import_datasets():
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - a dependency of emogrid
        raise DataError(f"loading datasets needs the 'datasets' package ({err})",
                        hint="pip install datasets") from None
    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity_error()
    return datasets


def hub_dataset(hub: HubRef, *, where: str, hint: str | None = None, cache_dir=None):
    """`datasets.load_dataset(id, config, revision=...)`: the only hub access of emogrid.

    With `snapshot` (a repo fetched by emogrid.data.fetch) the same call reads that folder instead:
    `datasets` takes the configs and splits from its card, offline."""
    datasets = _import_datasets()
    if hub.snapshot:
        try:
            # the snapshot's arrow build goes to cache_dir (results/.cache/datasets), like
            # local files: never the home directory of a compute node
            with _cache(cache_dir) as cache:
                return datasets.load_dataset(hub.snapshot, hub.config, cache_dir=cache,
                                             keep_in_memory=True)
        except Exception as err:  # noqa: BLE001 - a broken or partial snapshot
            raise DataError(f"cannot load {where} from its fetched snapshot {hub.snapshot}: "
                            f"{type(err).__name__}: {err}",
                            hint="delete results/fetch/datasets/<name>.json and rerun to fetch it again") from None
    kwargs: dict[str, Any] = {}
    if hub.revision:
        kwargs["revision"] = hub.revision
    try:
        return datasets.load_dataset(hub.id, hub.config, **kwargs)
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
