"""Two results trees compared cell by cell (`emogrid diff A B`): what changed, and whether it matters.

A and B are results directories (the folder that holds `runs/`; a runs folder itself works too):
two machines, two commits, before and after a library upgrade. For every cell id:

- only in A / only in B;
- in both: its status in each (ok / failed / invalid), the keys of its spec (`spec.json`) and of
  its provenance (package versions, device, precision, git commit, data checksum, sources) that
  differ, and nothing else (host name and times always differ and are left out);
- in both and finished in both: per metric of the split (accuracy, macro-F1; micro-F1 for
  multi-label cells) A, B and B - A, with a paired test on the identical test examples read from
  both predictions.jsonl: McNemar's exact test for accuracy, the paired bootstrap for F1 (the
  tests and the resampling of `emogrid.results.uncertainty.paired_test`, which the report's
  method comparisons use). Holm's correction runs over the family of every test made (each
  shared cell x metric); a cell *differs significantly* when any of its tests does after Holm.

A pair of cells whose predictions are missing, or were made on other examples (other ids, order
or gold labels: the data changed), gets no paired test; a different value there is reported as
`untested`, never as significant. The replicates are `emogrid.results.uncertainty`'s
(`example_replicates`, the same that `emogrid aggregate` draws), so the diff follows whatever
tests that module makes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emogrid.results import stats, uncertainty
from emogrid.results.collect import find_result_files

ALPHA = 0.05
METRICS = ("accuracy", "f1_macro")
MULTI_METRICS = ("accuracy", "f1_macro", "f1_micro")
# provenance keys that differ between any two runs, so they never count as a difference
VOLATILE_PROVENANCE = ("hostname", "started", "finished")
METRIC_COLUMNS = ["cell_id", "metric", "a", "b", "diff", "boot_low", "boot_high", "test", "p", "p_holm",
                  "significant", "note"]
CELL_COLUMNS = ["cell_id", "status_a", "status_b", "spec", "provenance", "significant", "untested"]


def runs_dir(results: str | os.PathLike) -> Path:
    """`<results>/runs` when it exists, else `results` itself (a runs folder given directly)."""
    path = Path(results)
    return path / "runs" if (path / "runs").is_dir() else path


@dataclass
class TreeDiff:
    """What `diff_trees` found. `cells`: one row per shared cell (CELL_COLUMNS; `spec` and
    `provenance` map each differing key to its (A, B) values); `metrics`: one row per shared
    finished cell and metric (METRIC_COLUMNS; `diff` = B - A)."""

    a: str
    b: str
    split: str
    alpha: float
    only_a: list[str]
    only_b: list[str]
    cells: pd.DataFrame
    metrics: pd.DataFrame
    family: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> list[str]:
        """Shared cells that differ significantly, changed status, or moved without a possible paired
        test (what --fail-on-change counts: a missing predictions.jsonl never hides a change)."""
        moved = (self.cells["significant"] | self.cells["untested"]
                 | (self.cells["status_a"] != self.cells["status_b"]))
        return self.cells.loc[moved, "cell_id"].tolist()

    def summary_line(self) -> str:
        cells = self.cells
        shared = len(cells)
        sig = int(cells["significant"].sum())
        line = (f"{sig} of {shared} shared cell{'s' if shared != 1 else ''} differ{'s' if shared == 1 else ''} "
                f"significantly ({self.split} split, Holm over {self.counts.get('tests', 0)} tests, "
                f"alpha {self.alpha:g})")
        status = int((cells["status_a"] != cells["status_b"]).sum())
        untested = int(cells["untested"].sum())
        unpaired = self.counts.get("unpaired", 0)
        extra = [f"{status} changed status" if status else "",
                 f"{unpaired} finished in both without a paired test (no predictions, or other examples), "
                 f"{untested} of them moved" if unpaired else "",
                 f"{len(self.only_a)} only in A" if self.only_a else "",
                 f"{len(self.only_b)} only in B" if self.only_b else ""]
        extra = [e for e in extra if e]
        return line + ("; " + ", ".join(extra) if extra else "")


def diff_trees(a: str | os.PathLike, b: str | os.PathLike, split: str = "test", alpha: float = ALPHA) -> TreeDiff:
    """Compare the result trees under `a` and `b` (module docstring)."""
    from emogrid.errors import EmogridError

    files_a, files_b = find_result_files(runs_dir(a)), find_result_files(runs_dir(b))
    for name, path, files in (("A", a, files_a), ("B", b, files_b)):
        if not files:
            raise EmogridError(f"{name} = {path}: no metrics.json or failure.json under {runs_dir(path)}",
                               hint="pass a results directory (the folder that holds runs/)")
    only_a = sorted(set(files_a) - set(files_b))
    only_b = sorted(set(files_b) - set(files_a))
    shared = sorted(set(files_a) & set(files_b))
    sides = {cid: (_side(files_a[cid], cid), _side(files_b[cid], cid)) for cid in shared}
    finished = [cid for cid, (sa, sb) in sides.items() if sa["status"] == sb["status"] == "ok"]
    # example-level replicates of each tree, as `emogrid aggregate` computes them: the resampling
    # of an evaluation set is seeded by its example ids, so A's and B's copies of a cell are
    # resampled alike, which is what pairs them
    reps = {name: _replicates(finished, [sides[c][i] for c in finished], runs_dir(path), split)
            for i, (name, path) in enumerate((("A", a), ("B", b)))}
    cells, tests = [], []
    for cid, (side_a, side_b) in sides.items():
        cells.append({"cell_id": cid, "status_a": side_a["status"], "status_b": side_b["status"],
                      "spec": _spec_diff(side_a, side_b), "provenance": _provenance_diff(side_a, side_b)})
        if cid in reps["A"]["ids"]:
            tests += _metric_rows(cid, side_a, side_b, split, reps)
    metrics = pd.DataFrame(tests, columns=METRIC_COLUMNS)
    p = pd.to_numeric(metrics["p"], errors="coerce").to_numpy(dtype=float)
    metrics["p_holm"] = stats.holm(p) if len(p) else p
    metrics["significant"] = metrics["p_holm"] < alpha
    frame = pd.DataFrame(cells, columns=CELL_COLUMNS[:5])
    sig = metrics.groupby("cell_id")["significant"].any() if len(metrics) else pd.Series(dtype=bool)
    untested = metrics[metrics["p"].isna() & (metrics["diff"].abs() > 0)].groupby("cell_id").size() \
        if len(metrics) else pd.Series(dtype=int)
    frame["significant"] = frame["cell_id"].map(sig).fillna(False).astype(bool)
    frame["untested"] = frame["cell_id"].isin(untested.index)
    n_tests = int(np.isfinite(p).sum())
    tested = set(metrics.loc[np.isfinite(p), "cell_id"])
    unpaired = len(set(metrics["cell_id"]) - tested)
    family = (f"Holm over {n_tests} paired tests: every shared finished cell x metric "
              f"({', '.join(sorted(set(metrics['metric'])))}) on the {split} split")
    return TreeDiff(str(a), str(b), split, alpha, only_a, only_b, frame, metrics, family,
                    {"a": len(files_a), "b": len(files_b), "shared": len(shared), "tests": n_tests,
                     "unpaired": unpaired})


# ----------------------------------------------------------------------------- one side of a cell


def _side(paths: dict[str, Path], cell_id: str) -> dict[str, Any]:
    """A cell folder's status, metrics, provenance and spec."""
    from emogrid.training import cell_files

    kind = "metrics" if "metrics" in paths else "failure"
    checked = cell_files.read(paths[kind], kind, cell_id=cell_id)
    run_dir = paths[kind].parent
    if not checked.valid:
        return {"status": "invalid", "error": checked.reason, "run_dir": run_dir, "spec": None, "data": {}}
    data = checked.data
    status = "ok" if kind == "metrics" and data.get("status", "ok") == "ok" else "failed"
    return {"status": status, "run_dir": run_dir, "data": data, "spec": cell_files.read_spec(run_dir)}


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as {dotted key: leaf value} (lists are leaves)."""
    if not isinstance(obj, dict):
        return {prefix: obj} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(flatten(value, name) if isinstance(value, dict) and value else {name: value})
    return out


def _changed(a: dict, b: dict) -> dict[str, tuple]:
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _spec_diff(a: dict, b: dict) -> dict[str, tuple]:
    """Spec keys that differ; without a spec.json on either side, the spec hashes stand in."""
    if a["spec"] is not None and b["spec"] is not None:
        return _changed(flatten({k: v for k, v in a["spec"].items() if k != "config_hash"}),
                        flatten({k: v for k, v in b["spec"].items() if k != "config_hash"}))
    hashes = [(s["data"].get("provenance") or {}).get("config_hash") for s in (a, b)]
    missing = [n for n, s in (("A", a), ("B", b)) if s["spec"] is None and s["status"] != "invalid"]
    out = {"config_hash": tuple(hashes)} if hashes[0] != hashes[1] else {}
    if missing and out:
        out["spec.json"] = tuple("missing" if s["spec"] is None else "present" for s in (a, b))
    return out


def _provenance_diff(a: dict, b: dict) -> dict[str, tuple]:
    def flat(side):
        prov = dict((side["data"] or {}).get("provenance") or {})
        for key in VOLATILE_PROVENANCE + ("config_hash",):  # the hash: the spec diff says what changed
            prov.pop(key, None)
        return flatten(prov)

    return _changed(flat(a), flat(b))


# ----------------------------------------------------------------------------- metrics and tests


def _replicates(ids: list[str], sides: list[dict], runs: Path, split: str) -> dict:
    """uncertainty.example_replicates for the finished shared cells of one tree."""
    frame = pd.DataFrame([{"cell_id": cid, "labels": len((side["data"].get(split) or {}).get("labels") or []),
                           "mode": _mode(side["data"].get(split) or {}), "status": "ok"}
                          for cid, side in zip(ids, sides)], columns=["cell_id", "labels", "mode", "status"])
    confusions = {}
    for cid, side in zip(ids, sides):
        cm = (side["data"].get(split) or {}).get("confusion_matrix")
        if isinstance(cm, list):
            confusions[(cid, split)] = np.asarray(cm, dtype=np.int64)
    return {"ids": set(ids), "reps": uncertainty.example_replicates(frame, confusions, runs, (split,))}


def _mode(metrics: dict) -> str:
    return "multi" if ("f1_micro" in metrics or "exact_match" in metrics) else "single"


def _metric_rows(cell_id: str, a: dict, b: dict, split: str, reps: dict) -> list[dict]:
    """One row per metric: A, B, B - A and the paired test on the identical examples."""
    ma, mb = a["data"].get(split) or {}, b["data"].get(split) or {}
    names = [m for m in (MULTI_METRICS if _mode(ma) == "multi" else METRICS) if m in ma and m in mb]
    ra, rb = reps["A"]["reps"].get((cell_id, split)), reps["B"]["reps"].get((cell_id, split))
    note, tests = "", {}
    if ra is None or rb is None:
        note = "no example-level results (A or B)"
    elif "gold" in ra and "gold" in rb and (np.shape(ra["gold"]) != np.shape(rb["gold"])
                                             or not np.array_equal(ra["gold"], rb["gold"])):
        note = "other gold labels: not paired"
    else:
        ids = {"A": f"{cell_id}@A", "B": f"{cell_id}@B"}
        both = {(ids["A"], split): ra, (ids["B"], split): rb}
        # B first: the interval is of B - A
        tests = {m: uncertainty.paired_test([ids["B"]], [ids["A"]], split, m, both) for m in names}
        if any(t is None for t in tests.values()):
            note = _why_unpaired(a, b, split)
    rows = []
    for m in names:
        res = tests.get(m) or {}
        rows.append({"cell_id": cell_id, "metric": f"{split}_{m}", "a": float(ma[m]), "b": float(mb[m]),
                     "diff": float(mb[m]) - float(ma[m]), "boot_low": res.get("boot_low", np.nan),
                     "boot_high": res.get("boot_high", np.nan), "test": res.get("test", ""),
                     "p": res.get("p", np.nan), "note": note if not res else ""})
    return rows


def _why_unpaired(a: dict, b: dict, split: str) -> str:
    """Why two cells' predictions cannot be paired: missing, or other examples."""
    outcomes = [uncertainty.read_outcomes(s["run_dir"] / "predictions.jsonl").get(split) for s in (a, b)]
    if any(o is None for o in outcomes):
        return "no predictions.jsonl to pair (A or B)"
    if outcomes[0][0] != outcomes[1][0]:
        return "other test examples (ids or order differ): not paired"
    return "not paired (the evaluation sets differ)"
