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
or gold labels: the data changed), gets no test; a different value there is reported as
`untested`, never as significant.
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
        line = f"{sig} of {shared} shared cell{'s' if shared != 1 else ''} differ{'s' if shared == 1 else ''} " \
               f"significantly ({self.split} split, Holm over {self.counts.get('tests', 0)} tests, alpha {self.alpha:g})"
        status = int((cells["status_a"] != cells["status_b"]).sum())
        untested = int(cells["untested"].sum())
        extra = [f"{status} changed status" if status else "",
                 f"{untested} moved without a paired test (no predictions, or other examples)" if untested else "",
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
    cells, tests = [], []
    for cid in shared:
        side_a, side_b = _side(files_a[cid], cid), _side(files_b[cid], cid)
        cells.append({"cell_id": cid, "status_a": side_a["status"], "status_b": side_b["status"],
                      "spec": _spec_diff(side_a, side_b), "provenance": _provenance_diff(side_a, side_b)})
        if side_a["status"] == side_b["status"] == "ok":
            tests += _metric_rows(cid, side_a, side_b, split)
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
    family = (f"Holm over {n_tests} paired tests: every shared finished cell x metric "
              f"({', '.join(sorted(set(metrics['metric'])))}) on the {split} split")
    return TreeDiff(str(a), str(b), split, alpha, only_a, only_b, frame, metrics, family,
                    {"a": len(files_a), "b": len(files_b), "shared": len(shared), "tests": n_tests})


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


def _metric_rows(cell_id: str, a: dict, b: dict, split: str) -> list[dict]:
    """One row per metric: A, B, B - A and the paired test on the identical examples."""
    ma, mb = a["data"].get(split) or {}, b["data"].get(split) or {}
    multi = "f1_micro" in ma or "exact_match" in ma
    names = [m for m in (MULTI_METRICS if multi else METRICS) if m in ma and m in mb]
    tests, note = _paired_tests(cell_id, a, b, split, names, len(ma.get("labels") or []))
    rows = []
    for m in names:
        res = tests.get(m) or {}
        rows.append({"cell_id": cell_id, "metric": f"{split}_{m}", "a": float(ma[m]), "b": float(mb[m]),
                     "diff": float(mb[m]) - float(ma[m]), "boot_low": res.get("boot_low", np.nan),
                     "boot_high": res.get("boot_high", np.nan), "test": res.get("test", ""),
                     "p": res.get("p", np.nan), "note": note})
    return rows


def _paired_tests(cell_id: str, a: dict, b: dict, split: str, metrics: list[str], k: int) -> tuple[dict, str]:
    """{metric: paired_test result} for B vs A, and a note when no test could be made."""
    outcomes = [uncertainty.read_outcomes(s["run_dir"] / "predictions.jsonl").get(split) for s in (a, b)]
    if any(o is None for o in outcomes):
        return {}, "no predictions.jsonl to pair (A or B)"
    (key_a, gold_a, pred_a), (key_b, gold_b, pred_b) = outcomes
    if key_a != key_b:
        return {}, "other test examples (ids or order differ): not paired"
    if gold_a.shape != gold_b.shape or not np.array_equal(gold_a, gold_b) or pred_a.shape != pred_b.shape:
        return {}, "other gold labels on the same example ids: not paired"
    weights = uncertainty.bootstrap_weights(len(gold_a), stats.rng_for("examples", key_a))
    ids = {"b": f"{cell_id}@B", "a": f"{cell_id}@A"}
    if gold_a.ndim == 2:  # multi-label: multi-hot rows
        reps_a = uncertainty.multilabel_replicates(weights, gold_a, pred_a)
        reps_b = uncertainty.multilabel_replicates(weights, gold_b, pred_b)
    else:
        k = max(k, int(gold_a.max()) + 1, int(pred_a.max()) + 1, int(pred_b.max()) + 1)
        reps_b, reps_a = uncertainty.set_replicates(weights, [(ids["b"], split, gold_b, pred_b, k),
                                                              (ids["a"], split, gold_a, pred_a, k)])
    reps = {(ids["a"], split): {"key": key_a, "gold": gold_a, "pred": pred_a, **reps_a},
            (ids["b"], split): {"key": key_b, "gold": gold_b, "pred": pred_b, **reps_b}}
    # B first: the bootstrap interval is of B - A
    return {m: uncertainty.paired_test([ids["b"]], [ids["a"]], split, m, reps) for m in metrics}, ""
