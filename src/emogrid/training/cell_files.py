"""Read and check a cell's result files: the one gate every reader goes through.

`metrics.json` and `failure.json` are checked against the JSON Schemas shipped in
`emogrid/schemas/` (written from docs/CONTRACTS.md) and against their identity: the
`cell_id` inside must be the folder the file lives in, and, when the reader knows the current
spec, `provenance.config_hash` must be that spec's hash. A file that fails any check is
*invalid*: aggregate lists it (with the file and the reason) instead of tabling it, status
shows it, and the workflow moves it aside so the cell is trained again.

Light on purpose (json, yaml, jsonschema): `emogrid status` and the Snakefile import it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

KINDS = {"metrics": "metrics.json", "failure": "failure.json"}
INVALID_SUFFIX = ".invalid"


@cache
def _validator(kind: str):
    import jsonschema

    from emogrid.package_data import schema

    return jsonschema.Draft202012Validator(schema(kind))


@cache
def _fast(kind: str):
    """A compiled validator (fastjsonschema, ~15x faster): the common case is a valid file, and
    a 1,080-cell grid is checked on every Snakemake start. Failures are explained by jsonschema."""
    import fastjsonschema

    return fastjsonschema.compile({k: v for k, v in schema(kind).items() if k != "$schema"})


def schema(kind: str) -> dict:
    """The JSON Schema of `metrics` or `failure` files, as a dict."""
    return _validator(kind).schema


def _where(error) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    return path.lstrip(".") or "(top level)"


def _message(error) -> str:
    value = error.instance
    v = error.validator
    if v == "const":
        return f"expected {error.validator_value!r}, got {value!r}"
    if v == "type":
        kind = error.validator_value
        kind = " or ".join(kind) if isinstance(kind, list) else kind
        return f"expected {kind}, got {type(value).__name__} {json.dumps(value)[:40]}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        sym = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[v]
        return f"expected a value {sym} {error.validator_value}, got {value!r}"
    if v == "pattern":
        return (f"{value!r} is not of the form dataset/model/method[/variant]/kK_nN/sSEED"
                if error.absolute_path and list(error.absolute_path)[-1] == "cell_id"
                else f"{value!r} does not match {error.validator_value}")
    return error.message[:200]


def problems(obj: Any, kind: str, *, cell_id: str | None = None,
             config_hash: str | None = None) -> list[str]:
    """Why `obj` is not a valid `kind` file for this cell ([] when it is).

    Each message names the key: ``test.accuracy: expected a value <= 1, got 1.5``.
    """
    if not isinstance(obj, dict):
        return [f"expected a JSON object, got {type(obj).__name__}"]
    import fastjsonschema

    try:
        _fast(kind)(obj)
        errors = []
    except fastjsonschema.JsonSchemaException:
        errors = sorted(_validator(kind).iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    missing: dict[str, list[str]] = {}  # one message per object for its missing keys
    out = []
    for e in errors:
        if e.validator == "required":
            missing.setdefault(_where(e), []).append(e.message.split(" ")[0])
        else:
            out.append(f"{_where(e)}: {_message(e)}")
    out += [f"{where}: missing key{'s' if len(keys) > 1 else ''} {', '.join(keys)}"
            for where, keys in missing.items()]
    if len(out) > 10:
        out = out[:10] + [f"... and {len(out) - 10} more"]
    recorded = obj.get("cell_id")
    if cell_id is not None and isinstance(recorded, str) and recorded != cell_id:
        out.append(f"cell_id: the file records cell {recorded!r} but lives in the folder of "
                   f"{cell_id!r} (copied from another cell?)")
    if kind == "metrics" and config_hash is not None:
        prov = obj.get("provenance")
        recorded_hash = prov.get("config_hash") if isinstance(prov, dict) else None
        if isinstance(recorded_hash, str) and recorded_hash != config_hash:
            out.append(f"provenance.config_hash: {recorded_hash[:12]}... is not the current spec's "
                       f"{config_hash[:12]}... (trained with other settings; Snakemake reruns a "
                       "cell whose spec changed)")
    return out


@dataclass
class Result:
    """One result file, read and checked."""

    path: Path
    kind: str  # metrics | failure
    data: dict | None  # the parsed object (None if unreadable)
    problems: list[str]

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def reason(self) -> str:
        return f"{self.path}: " + "; ".join(self.problems)


def read(path: str | os.PathLike, kind: str, *, cell_id: str | None = None,
         config_hash: str | None = None) -> Result:
    """Parse and check one result file; never raises for a bad file (see Result.problems)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        return Result(path, kind, None, [f"cannot read it ({err.strerror or err})"])
    try:
        obj = json.loads(text)
    except ValueError as err:
        what = "empty file" if not text.strip() else f"not valid JSON ({type(err).__name__}: {err})"
        return Result(path, kind, None, [what + (" (truncated?)" if text.strip() else "")])
    return Result(path, kind, obj if isinstance(obj, dict) else None,
                  problems(obj, kind, cell_id=cell_id, config_hash=config_hash))


def check_cell(run_dir: str | os.PathLike, cell_id: str, config_hash: str | None = None) -> Result | None:
    """The cell's metrics.json, checked; None when there is none."""
    path = Path(run_dir) / KINDS["metrics"]
    if not path.is_file():
        return None
    return read(path, "metrics", cell_id=cell_id, config_hash=config_hash)


def set_aside(result: Result) -> Path:
    """Move an invalid file out of Snakemake's way (`metrics.json.invalid`), keeping it to inspect."""
    target = result.path.with_name(result.path.name + INVALID_SUFFIX)
    os.replace(result.path, target)
    return target


TRAIN_OUTPUTS = ("metrics.json", "predictions.jsonl", "train_log.jsonl")  # the train rule's outputs
SPEC_FILE = "spec.json"  # the spec the cell was trained with, as the study gave it (before a fetched
#                         model's snapshot path was filled in): its hash is provenance.config_hash


def read_spec(run_dir: str | os.PathLike) -> dict | None:
    """The cell's spec.json (what `emogrid diff` and `emogrid publish` read), None when the cell
    has none (trained before emogrid wrote it) or it is unreadable."""
    try:
        obj = json.loads((Path(run_dir) / SPEC_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def reconcile(cells, results_dir: str | os.PathLike = "results", *,
              snakemake_dir: str | os.PathLike = ".snakemake") -> list[str]:
    """Make Snakemake's view of the grid agree with the result files, before it plans the DAG.

    * An invalid metrics.json (its schema or its cell id; see `problems`) is moved aside to
      `metrics.json.invalid`, so Snakemake sees the cell as missing and trains it again. Such a
      file is no result under any config, so this happens under `snakemake -n` too. One that
      is valid but was trained with other settings (config hash) is left to Snakemake, whose
      params trigger reruns it; a dry run after a config edit never moves results away.
    * A valid one of the current spec is a finished cell, whatever Snakemake recorded: if Snakemake was stopped
      (Ctrl-C) after the job wrote its results but before it post-processed the job, the
      outputs are still marked incomplete and `rerun-incomplete` would train the cell again.
      Those marks (Snakemake's file persistence, `.snakemake/incomplete/<base64 of path>`)
      are removed for the train outputs of valid cells. `emogrid train` writes metrics.json
      last, after predictions and the train log, so a valid metrics.json means all three are
      complete.

    Returns one line per action, for the console.
    """
    results_dir = Path(results_dir)
    marks = Path(snakemake_dir) / "incomplete"
    marked = _marked_incomplete(marks)
    notes = []
    for cell in cells:
        run_dir = results_dir / cell.run_dir
        res = check_cell(run_dir, cell.cell_id)
        if res is None:
            continue
        if not res.valid:
            target = set_aside(res)
            notes.append(f"{res.reason} -> moved to {target.name}; the cell will be trained again")
            continue
        if not marked or res.data["provenance"]["config_hash"] != cell.spec.get("config_hash"):
            continue
        for name in TRAIN_OUTPUTS:
            mark = _mark_path(marks, f"{run_dir}/{name}")
            if str(mark) in marked:
                mark.unlink(missing_ok=True)
                if name == "metrics.json":
                    notes.append(f"{cell.cell_id}: finished (valid metrics.json) but marked incomplete "
                                 "by an interrupted Snakemake; kept, not retrained")
    return notes


def _marked_incomplete(marks: Path) -> set[str]:
    if not marks.is_dir():
        return set()
    return {os.path.join(root, f) for root, _dirs, files in os.walk(marks) for f in files}


def _mark_path(marks: Path, key: str) -> Path:
    """Snakemake 9's FilePersistence._record_path: urlsafe base64 of the output path, split
    into NAME_MAX-sized folders ('@'-prefixed) when longer."""
    from base64 import urlsafe_b64encode

    max_len = (os.pathconf(marks, "PC_NAME_MAX") if os.name == "posix" else 255) or 255
    b64 = urlsafe_b64encode(key.encode()).decode()
    parts = [b64[i:i + max_len - 1] for i in range(0, len(b64), max_len - 1)]
    parts = ["@" + p for p in parts[:-1]] + [parts[-1]]
    return marks.joinpath(*parts)


# ---------------------------------------------------------------- who is training a cell

OWNER_FILE = ".running.json"
HEARTBEAT_SECONDS = 60  # a training process touches its claim this often
STALE_SECONDS = 600  # a claim from another host untouched this long: its process is gone
_heartbeats: dict[str, object] = {}


def claim(run_dir: str | os.PathLike) -> Path:
    """Record that this process trains the cell (pid, host, process start time), and keep the
    record fresh (a daemon thread touches it every HEARTBEAT_SECONDS) until `release`."""
    import socket
    import threading

    import psutil

    from emogrid.atomic import write_json

    me = psutil.Process()
    path = Path(run_dir) / OWNER_FILE
    write_json(path, {"pid": me.pid, "hostname": socket.gethostname(), "create_time": me.create_time()})
    stop = threading.Event()

    def beat():
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(path)
            except OSError:
                return

    threading.Thread(target=beat, name="emogrid-heartbeat", daemon=True).start()
    _heartbeats[str(path)] = stop
    return path


def release(run_dir: str | os.PathLike) -> None:
    path = Path(run_dir) / OWNER_FILE
    stop = _heartbeats.pop(str(path), None)
    if stop is not None:
        stop.set()
    path.unlink(missing_ok=True)


def owner_alive(run_dir: str | os.PathLike) -> bool | None:
    """True: the recorded training process still runs; False: it is gone (killed, machine
    rebooted); None: no record. On this host the pid (and its start time) is checked; a
    claim from another host (a cluster node) is alive while its heartbeat is fresh."""
    import socket
    import time

    import psutil

    path = Path(run_dir) / OWNER_FILE
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
        pid, host, created = int(owner["pid"]), owner["hostname"], float(owner["create_time"])
        age = time.time() - path.stat().st_mtime
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname():
        return age < STALE_SECONDS
    try:
        return abs(psutil.Process(pid).create_time() - created) < 1.0  # not a reused pid
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
