"""`emogrid` command line: one subcommand per pipeline step, each callable alone.

Subcommands are registered lazily (module path strings) so `emogrid status` never pays
for importing torch or peft.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Each module defines `configure_parser(p)` and `run(args) -> int`.
COMMANDS: dict[str, tuple[str, str]] = {
    "grid": ("emogrid.planning.grid_command", "list the cells of a study config (validates it first)"),
    "fetch": ("emogrid.data.fetch", "download the study's hub models and datasets once (for offline compute nodes)"),
    "prepare": ("emogrid.data.prepare", "build one data subset (labels k, samples n, seed)"),
    "train": ("emogrid.training.train", "train and evaluate one grid cell, write metrics.json"),
    "tune-select": ("emogrid.results.tune_select", "rank a tuning group's candidates on validation, write its choice"),
    "aggregate": ("emogrid.report.aggregate", "collect finished cells into tidy tables"),
    "figures": ("emogrid.report.plots", "draw the study figures from the tables"),
    "status": ("emogrid.report.status", "show done / failed / pending cells of the grid"),
    "plan": ("emogrid.planning.plan", "exact parameter counts and memory estimates per cell, offline"),
    "diff": ("emogrid.report.diff", "compare two results trees cell by cell: what moved, paired tests, settings"),
    "publish": ("emogrid.report.publish", "write a cell's adapter with a model card, and upload it to the hub"),
    "gpu-slot": ("emogrid.scheduling.gpu_slots", "run a command holding one free GPU (sets CUDA_VISIBLE_DEVICES)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emogrid", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    from emogrid.errors import EmogridError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        build_parser().parse_args(argv)  # prints usage / error and exits
        return 2
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"emogrid {name}", description=COMMANDS[name][1])
    module.configure_parser(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except EmogridError as err:
        print(f"emogrid {name}: error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
