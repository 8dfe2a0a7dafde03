"""Write a local GoEmotions copy in the layout emogrid reads offline.

    python -m emogrid.data.goemotions_copy DIR                 # from the dataset hub (needs internet)
    python -m emogrid.data.goemotions_copy DIR --snapshot HUB  # from `hf download ... --local-dir HUB`

reads `google-research-datasets/go_emotions` (config `simplified`) through the same loader as a
study, and writes `DIR/original/` (28 labels) and `DIR/ekman/` (Ekman's six + neutral, mapped
with `emogrid.study.taxonomies.EKMAN_MAPPING`), each `train.tsv dev.tsv test.tsv labels.txt`: no header;
text, comma-separated label ids, comment id. Set `EMOGRID_DATA_DIR=DIR` (or `data.path`) to use it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from emogrid import atomic
from emogrid.data.goemotions import SPLIT_FILES, GoEmotionsSource, load_source
from emogrid.data.goemotions_tsv import render_tsv
from emogrid.data.splits import Split
from emogrid.errors import DataError, EmogridError
from emogrid.study.dataset_definition import DEFAULT_HUB, HubRef
from emogrid.study.taxonomies import ekman_id_map, taxonomy_labels


def write_copy(out: str | Path, *, snapshot: str | None = None, revision: str | None = None) -> dict:
    """Write DIR/original and DIR/ekman; returns {taxonomy: {split file: rows}}."""
    out = Path(out)
    source = GoEmotionsSource("hub", "original", "emogrid.data.goemotions_copy",
                              hub=HubRef(DEFAULT_HUB["id"], DEFAULT_HUB["config"], revision, snapshot))
    loaded = load_source(source)
    splits = {"train.tsv": loaded.train, "dev.tsv": loaded.val, "test.tsv": loaded.test}
    to_ekman = ekman_id_map()
    counts: dict[str, dict[str, int]] = {}
    for taxonomy in ("original", "ekman"):
        folder = out / taxonomy
        for name in SPLIT_FILES:
            split = splits[name]
            if taxonomy == "ekman":
                split = replace(split, labels=[tuple(sorted({to_ekman[lab] for lab in labs}))
                                               for labs in split.labels])
            _check_writable(split)
            with atomic.atomic_path(folder / name) as tmp:
                tmp.write_bytes(render_tsv(split))
            counts.setdefault(taxonomy, {})[name] = len(split)
        atomic.write_text(folder / "labels.txt", "".join(f"{name}\n" for name in taxonomy_labels(taxonomy)))
    return counts


def _check_writable(split: Split) -> None:
    for row, (text, cid) in enumerate(zip(split.texts, split.ids)):
        if any(ch in text + cid for ch in "\t\r\n"):
            raise DataError(f"{split.name} row {row} (id {cid}): a tab or line break cannot be written "
                            "in the TSV layout")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emogrid.data.goemotions_copy", description=__doc__.splitlines()[0])
    parser.add_argument("out", metavar="DIR", help="folder to write original/ and ekman/ into")
    parser.add_argument("--snapshot", metavar="HUB_DIR",
                        help="a local copy of the hub repo (hf download google-research-datasets/go_emotions "
                             "--repo-type dataset --local-dir HUB_DIR) instead of the hub")
    parser.add_argument("--revision", help="hub revision (commit) to read; default: the newest")
    args = parser.parse_args(argv)
    try:
        counts = write_copy(args.out, snapshot=args.snapshot, revision=args.revision)
    except EmogridError as err:
        print(f"emogrid.data.goemotions_copy: error: {err}", file=sys.stderr)
        return err.exit_code
    rows = ", ".join(f"{name.split('.')[0]} {n}" for name, n in counts["original"].items())
    print(f"wrote {args.out}/original and {args.out}/ekman ({rows}); set EMOGRID_DATA_DIR={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
