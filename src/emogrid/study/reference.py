"""`report.reference`: the CSV of published numbers a study is compared with, checked when the study
is loaded (before anything runs), so a bad file stops with one message naming it, the row and the
column, never inside the report job.

One row per published number:

    study, dataset, model, method, labels, samples, split, metric, value [, n_eval] [, evidence] [, source]

`split` is `val` or `test`, `metric` one emogrid reports (METRICS), `labels` and `samples` whole
numbers, `value` a number (in %, or fractions if every value is <= 1). Optional: `n_eval`, the
size of the paper's evaluation set (a whole number, or blank: unknown), and `evidence`, where
in the paper the number stands with a short paraphrase (free text, never a quotation). Rows are numbered as
the file's lines (the header is line 1). The frame itself is built in emogrid.results.replication.
"""

from __future__ import annotations

import csv
import difflib
from pathlib import Path

COLUMNS = ["study", "dataset", "model", "method", "labels", "samples", "split", "metric", "value"]
SPLITS = ("val", "test")
# the scalar metrics of metrics.json (docs/CONTRACTS.md), as scikit-learn spells them
METRICS = ("accuracy", "f1_macro", "f1_weighted", "f1_micro", "precision_macro", "precision_weighted",
           "precision_micro", "recall_macro", "recall_weighted", "recall_micro", "exact_match")
MAX_PROBLEMS = 10


def resolve_reference(path: str | Path) -> Path:
    """A relative path is read from the working directory, else from the workflow's checkout
    (where config.yaml and studies/references/ live)."""
    path = Path(path)
    checkout = source_checkout()
    if not path.is_absolute() and not path.exists() and checkout and (checkout / path).exists():
        return checkout / path
    return path


def source_checkout() -> Path | None:
    """The emogrid checkout this package runs from (its Snakefile beside src/), or None for an
    installed package."""
    root = Path(__file__).resolve().parents[3]  # src/emogrid/study/reference.py -> the checkout
    return root if (root / "Snakefile").is_file() and (root / "src" / "emogrid").is_dir() else None


def _number(text: str, whole: bool) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    if value != value or value in (float("inf"), float("-inf")) or (whole and (value % 1 or value < 1)):
        return None
    return value


def read_rows(path: str | Path) -> tuple[Path, list[dict], list[str]]:
    """(resolved path, rows as {column: text, "line": n}, problems). Problems name the file's
    line and the column; [] when the file is a valid reference."""
    path = resolve_reference(path)
    where = f"report.reference: {path}"
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            records = list(reader)
    except FileNotFoundError:
        return path, [], [f"{where} does not exist (a CSV of published numbers: {', '.join(COLUMNS)}; "
                          "see studies/references/)"]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        return path, [], [f"{where}: not a readable CSV ({err})"]
    header = [h.strip() for h in header or []]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        return path, [], [f"{where} lacks column(s) {', '.join(missing)} (line 1, the header: "
                          f"{', '.join(header) or 'empty'}); expected {', '.join(COLUMNS)} and optionally "
                          "n_eval, evidence, source"]
    rows, problems = [], []
    for offset, record in enumerate(records):
        line = offset + 2
        if not any(field.strip() for field in record):
            continue  # a blank line
        if len(record) != len(header):
            problems.append(f"line {line}: {len(record)} fields, the header has {len(header)}")
            continue
        row = {h: field.strip() for h, field in zip(header, record)}
        row["line"] = line
        for column in ("labels", "samples"):
            if _number(row[column], whole=True) is None:
                problems.append(f"line {line}, column {column}: expected a whole number >= 1, got {row[column]!r}")
        if _number(row["value"], whole=False) is None:
            problems.append(f"line {line}, column value: expected a number, got {row['value']!r}")
        if row.get("n_eval") and _number(row["n_eval"], whole=True) is None:
            problems.append(f"line {line}, column n_eval: expected a whole number of evaluation examples >= 1 "
                            f"(or blank), got {row['n_eval']!r}")
        if row["split"] not in SPLITS:
            problems.append(f"line {line}, column split: expected val or test, got {row['split']!r}")
        if row["metric"] not in METRICS:
            close = difflib.get_close_matches(row["metric"], METRICS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"line {line}, column metric: unknown metric {row['metric']!r}{hint}; "
                            f"expected one of {', '.join(METRICS)}")
        for column in ("dataset", "model", "method"):
            if not row[column]:
                problems.append(f"line {line}, column {column}: empty")
        rows.append(row)
    if len(problems) > MAX_PROBLEMS:
        problems = problems[:MAX_PROBLEMS] + [f"... and {len(problems) - MAX_PROBLEMS} more"]
    return path, rows, [f"{where}: {p}" for p in problems]


def reference_problems(config: dict) -> list[str]:
    """The problems of the study's report.reference ([] without one, or when it is valid)."""
    ref = (config.get("report") or {}).get("reference")
    if not ref:
        return []
    return read_rows(ref)[2]


def unmatched_rows(config: dict, cells) -> str | None:
    """A warning when rows of the reference map to no cell of the study (dataset, model, method,
    labels, samples): they will show as "not measured" or be left out. None when all match."""
    ref = (config.get("report") or {}).get("reference")
    if not ref:
        return None
    path, rows, problems = read_rows(ref)
    if problems or not rows:
        return None
    have = {(c.axes["dataset"], c.axes["model"], c.axes["method"], int(c.axes["labels"]), int(c.axes["samples"]))
            for c in cells}
    lost = [r for r in rows if (r["dataset"], r["model"], r["method"], int(float(r["labels"])),
                                int(float(r["samples"]))) not in have]
    if not lost:
        return None
    lines = ", ".join(str(r["line"]) for r in lost[:8]) + (", ..." if len(lost) > 8 else "")
    first = lost[0]
    return (f"report.reference: {path}: {len(lost)} of {len(rows)} row(s) match no cell of this study "
            f"(lines {lines}; e.g. dataset {first['dataset']}, model {first['model']}, method {first['method']}, "
            f"labels {first['labels']}, samples {first['samples']}): the replication table leaves them out "
            "or marks them not measured")
