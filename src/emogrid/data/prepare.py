"""`emogrid prepare`: build one (k labels, n samples, seed) data subset from the command line.

The work is done elsewhere, one job a module: where a dataset is and how it is read
(`emogrid.datasets`: `registry` definitions, `goemotions` and `table` loaders), which labels
and rows a subset holds (`emogrid.data.subset_selection`), and writing the subset directory with
its manifest (`emogrid.data.subset_writer`).
"""

from __future__ import annotations

import argparse
import json

from emogrid.data.subset_writer import prepare_subset
from emogrid.errors import ConfigError
from emogrid.study.dataset_definition import DatasetDefinition


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="JSON", help="the config's data section, as JSON")
    parser.add_argument("--labels", required=True, type=int, metavar="K", help="number of labels k")
    parser.add_argument("--samples", required=True, type=int, metavar="N",
                        help="number of examples n (train + val; train only with val_from: source)")
    parser.add_argument("--seed", required=True, type=int, metavar="S", help="random seed of the draw")
    parser.add_argument("--out", required=True, metavar="DIR", help="subset directory to (re)write")
    parser.add_argument("--fetched", metavar="RECEIPT", default=None,
                        help="fetch receipt of the hub dataset (emogrid fetch): load its snapshot offline")
    parser.add_argument("--cache", metavar="DIR", default=None,
                        help="where `datasets` caches its build of local files (default: a temporary directory)")


def run(args: argparse.Namespace) -> int:
    try:
        data_cfg = json.loads(args.data)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--data: not valid JSON ({err}); expected the config's data section") from None
    if not isinstance(data_cfg, dict):
        raise ConfigError(f"--data: expected a JSON object (the config's data section), got {type(data_cfg).__name__}")
    defn = DatasetDefinition.from_json(data_cfg)
    if getattr(args, "fetched", None):
        from emogrid.data.fetch import read_receipt

        # a fetched hub snapshot (emogrid fetch): read offline; the manifest records its commit
        receipt = read_receipt(args.fetched)
        defn = defn.with_hub_snapshot(receipt["snapshot"], receipt["commit"])
    manifest = prepare_subset(defn, args.labels, args.samples, args.seed, args.out, cache_dir=args.cache)
    sizes = {split: sum(c.values()) for split, c in manifest["counts"].items()}
    print(
        f"prepared {args.out}: labels {', '.join(manifest['labels'])}; "
        + ", ".join(f"{s} {v}" for s, v in sizes.items())
        + (" (label counts)" if manifest["mode"] == "multi" else "")
    )
    return 0
