"""`emogrid diff A B`: two results trees side by side, as Markdown or JSON (the comparison itself
is emogrid.results.tree_diff). Exit 0, or 1 with `--fail-on-change` when a shared cell differs
significantly, changed status or moved where no paired test is possible (no predictions, other
examples): a CI gate after a library upgrade.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from emogrid.results.tree_diff import ALPHA, TreeDiff, diff_trees

LIST_LIMIT = 20  # cell ids listed per section before "... and N more"


def _pct(value: float) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def _value(value: Any) -> str:
    return "(unset)" if value is None else json.dumps(value) if isinstance(value, (list, dict, bool)) else str(value)


def _ids(ids: list[str], limit: int = LIST_LIMIT) -> list[str]:
    lines = [f"- `{cid}`" for cid in ids[:limit]]
    return lines + ([f"- ... and {len(ids) - limit} more (--format json lists all)"] if len(ids) > limit else [])


def _settings(diff: TreeDiff) -> list[str]:
    """One line per differing setting (key, A value, B value), with the cells it differs in."""
    changes: dict[tuple, list[str]] = {}
    for rec in diff.cells.to_dict("records"):
        for what in ("spec", "provenance"):
            for key, (a, b) in rec[what].items():
                changes.setdefault((what, key, _value(a), _value(b)), []).append(rec["cell_id"])
    if not changes:
        return ["No spec or provenance key differs between the shared cells."]
    lines = []
    for (what, key, a, b), ids in sorted(changes.items(), key=lambda c: (c[0][0] != "spec", -len(c[1]), c[0])):
        every = len(ids) == len(diff.cells) and len(ids) > 1
        lines.append(f"- {what} `{key}`: {a} → {b} (" + (f"every shared cell, {len(ids)})" if every else
                                                          f"{len(ids)} cell{'s' if len(ids) > 1 else ''})"))
        if not every:
            lines += ["  " + line for line in _ids(ids, 5)]
    return lines


def render_markdown(diff: TreeDiff, limit: int = 50) -> str:
    from emogrid.results.stats import format_p

    lines = ["# emogrid diff", "", f"- A: `{diff.a}` ({diff.counts['a']} cells)",
             f"- B: `{diff.b}` ({diff.counts['b']} cells)", "", f"**{diff.summary_line()}**", "",
             f"Each number is in % (Δ = B − A); p from McNemar's exact test (accuracy) or the paired "
             f"bootstrap (F1) on the identical {diff.split} examples, adjusted by {diff.family}."]
    m = diff.metrics
    moved = m[m["diff"].abs() > 0].sort_values(["p_holm", "cell_id", "metric"], na_position="last")
    lines += ["", f"## Cells whose numbers moved ({moved['cell_id'].nunique()})", ""]
    if moved.empty:
        lines.append("No shared finished cell's numbers moved.")
    else:
        lines += ["| Cell | Metric | A | B | Δ | 95% interval of Δ | Test | p | p (Holm) | Significant |",
                  "|:--|:--|--:|--:|--:|:--|:--|--:|--:|:--|"]
        for rec in moved.head(limit).to_dict("records"):
            interval = ("–" if not math.isfinite(rec["boot_low"])
                        else f"[{100 * rec['boot_low']:+.1f}, {100 * rec['boot_high']:+.1f}]")
            test = rec["test"] or rec["note"]
            lines.append(f"| `{rec['cell_id']}` | {rec['metric']} | {_pct(rec['a'])} | {_pct(rec['b'])} | "
                         f"{100 * rec['diff']:+.1f} | {interval} | {test} | {format_p(rec['p'])} | "
                         f"{format_p(rec['p_holm'])} | {'yes' if rec['significant'] else 'no'} |")
        if len(moved) > limit:
            lines.append(f"\n... and {len(moved) - limit} more rows (--limit, or --format json for all)")
    status = diff.cells[diff.cells["status_a"] != diff.cells["status_b"]]
    if len(status):
        lines += ["", f"## Changed status ({len(status)})", "", "| Cell | A | B |", "|:--|:--|:--|"]
        lines += [f"| `{r.cell_id}` | {r.status_a} | {r.status_b} |" for r in status.head(limit).itertuples()]
    lines += ["", "## Settings that differ", ""] + _settings(diff)
    for name, ids in (("A", diff.only_a), ("B", diff.only_b)):
        lines += ["", f"## Only in {name} ({len(ids)})", ""] + (_ids(ids) if ids else ["none"])
    return "\n".join(lines) + "\n"


def to_json(diff: TreeDiff) -> dict:
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, tuple):
            return list(value)
        return value.item() if hasattr(value, "item") else value

    cells = []
    metrics = {cid: group for cid, group in diff.metrics.groupby("cell_id", sort=False)}
    for rec in diff.cells.to_dict("records"):
        rows = metrics.get(rec["cell_id"])
        cells.append({
            "cell_id": rec["cell_id"], "status": {"a": rec["status_a"], "b": rec["status_b"]},
            "significant": bool(rec["significant"]), "untested": bool(rec["untested"]),
            "spec": {k: [clean(x) for x in v] for k, v in rec["spec"].items()},
            "provenance": {k: [clean(x) for x in v] for k, v in rec["provenance"].items()},
            "metrics": [] if rows is None else [{k: clean(v) for k, v in r.items() if k != "cell_id"}
                                                for r in rows.to_dict("records")],
        })
    return {"a": diff.a, "b": diff.b, "split": diff.split, "alpha": diff.alpha, "family": diff.family,
            "summary": diff.summary_line(), "counts": diff.counts, "changed": diff.changed,
            "only_in_a": diff.only_a, "only_in_b": diff.only_b, "shared": cells}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", metavar="A", help="results folder (holding runs/) of the first run, or its study "
                                               "file (its folder by the Snakefile's rule: results:, else "
                                               "results/<study.name>)")
    parser.add_argument("b", metavar="B", help="results folder, or study file, of the second run")
    parser.add_argument("--format", choices=("md", "json"), default="md", help="output format (default: md)")
    parser.add_argument("--split", choices=("test", "val"), default="test", help="split compared (default: test)")
    parser.add_argument("--alpha", type=float, default=ALPHA,
                        help="family-wise error rate of the Holm-adjusted tests (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=50, help="rows of the moved-cells table in md (default: 50)")
    parser.add_argument("--fail-on-change", action="store_true",
                        help="exit 1 when a shared cell differs significantly, changed status, or moved without "
                             "a possible paired test")


def run(args: argparse.Namespace) -> int:
    from emogrid.errors import ConfigError

    if not 0 < args.alpha < 1:
        raise ConfigError(f"--alpha {args.alpha}: expected a number in (0, 1)")
    from emogrid.study.results_dir import results_dir_of

    diff = diff_trees(results_dir_of(args.a), results_dir_of(args.b), split=args.split, alpha=args.alpha)
    if args.format == "json":
        json.dump(to_json(diff), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_markdown(diff, limit=args.limit))
    return 1 if args.fail_on_change and diff.changed else 0
