"""A dataset definition as one frozen value: every setting typed, every default filled, checked once.

`DatasetDefinition.from_json` is the one place a definition's defaults are decided (the
schema's `data.*` defaults, then each kind's own: GoEmotions excludes neutral and reads the
hub's `simplified` config; a table reads its text from column `text`, maps
train/validation/test and carves a test split with test_fraction 0.2, seed 0). The registry
(`emogrid.study.datasets.resolve_dataset`) builds one per grid dataset, `emogrid prepare` one
from its `--data` JSON. Readers (subset selection, the GoEmotions and table loaders) read its
fields and derive nothing.

`as_json()` is the definition as the registry wrote it, key for key: the data rule's
parameter (a changed one reruns the dataset's subsets), unchanged by this type.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from emogrid.errors import ConfigError
from emogrid.study.schema import schema_default
from emogrid.study.taxonomies import NEUTRAL, taxonomy_labels

KINDS = ("goemotions", "table")
CARVE_DEFAULTS = {"test_fraction": 0.2, "carve_seed": 0}
DEFAULT_SPLITS = {"train": "train", "val": "validation", "test": "test"}
# GoEmotions on the hub: the `simplified` config (27 emotions + neutral, official splits)
DEFAULT_HUB = {"id": "google-research-datasets/go_emotions", "config": "simplified"}
# the text transforms a definition may name (emogrid.data.text_transforms implements them)
TRANSFORMS = ("lowercase", "strip_urls", "remove_stopwords")
DRAWS = ("balanced", "natural", "all")  # how a subset's rows are drawn (emogrid.data.subset_selection)


@dataclass(frozen=True)
class HubRef:
    """A dataset on the hub; `snapshot`/`commit`: its fetched copy (emogrid fetch), read offline."""

    id: str | None
    config: str | None = None
    revision: str | None = None
    snapshot: str | None = None
    commit: str | None = None

    @classmethod
    def from_json(cls, hub: Mapping) -> HubRef:
        return cls(**{key: hub.get(key) for key in ("id", "config", "revision", "snapshot", "commit")})


@dataclass(frozen=True)
class DatasetDefinition:
    """One dataset of the grid, as `emogrid prepare` reads it (module docstring)."""

    name: str
    kind: str  # goemotions | table
    mode: str  # single | multi
    labels: tuple[str, ...] | None  # explicit labels, in the order given (None: the k most frequent)
    val_fraction: float
    val_from: str  # subset | source
    test: str  # natural | balanced
    transforms: tuple[str, ...]
    draw: str  # balanced | natural | all
    threshold: float
    exclude_labels: tuple[str, ...]  # never picked by frequency
    hub: HubRef | None
    path: str | None
    taxonomy: str | None = None  # GoEmotions only: original | ekman
    # a table's columns and files (kind: table)
    text: str = "text"  # the text column
    label: str | None = None
    label_columns: tuple[str, ...] | None = None
    label_names: tuple[str, ...] | None = None
    id: str | None = None
    splits: Mapping[str, str | None] = field(default_factory=lambda: dict(DEFAULT_SPLITS))
    format: str | None = None
    header: bool = True
    columns: tuple[str, ...] | None = None
    test_fraction: float = CARVE_DEFAULTS["test_fraction"]
    carve_seed: int = CARVE_DEFAULTS["carve_seed"]
    written: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)  # as_json()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DatasetDefinition:
        """A definition as JSON -> checked, defaults filled; ConfigError naming the key.

        `data` is the registry's complete definition, or a hand-made one (tests, a `--data`
        written by hand) that leaves settings out: those take the schema's `data.*` defaults."""

        def setting(key: str) -> Any:
            value = data.get(key)
            return schema_default(f"data.{key}") if value is None else value

        kind = data.get("kind") or "goemotions"  # the `data:` section of an older study is GoEmotions
        goemotions = kind == "goemotions"
        hub = data.get("hub")
        defn = cls(
            name=setting("name"),
            kind=kind,
            mode=setting("mode"),
            labels=_strings(data.get("labels")),
            val_fraction=float(setting("val_fraction")),
            val_from=setting("val_from"),
            test=setting("test"),
            transforms=tuple(setting("transforms")),
            draw=setting("draw"),
            threshold=float(setting("threshold")),
            exclude_labels=tuple(data.get("exclude_labels", [NEUTRAL] if goemotions else [])),
            hub=HubRef.from_json({**DEFAULT_HUB, **(hub or {})}) if goemotions else (
                HubRef.from_json(hub) if hub else None),
            path=str(data["path"]) if data.get("path") else None,
            taxonomy=setting("taxonomy") if goemotions else None,
            text=data.get("text") or "text",
            label=data.get("label"),
            label_columns=_strings(data.get("label_columns")),
            label_names=_strings(data.get("label_names")),
            id=data.get("id"),
            splits={**DEFAULT_SPLITS, **(data.get("splits") or {})},
            format=data.get("format"),
            header=data.get("header", True) is not False,
            columns=_strings(data.get("columns")),
            test_fraction=float(data.get("test_fraction", CARVE_DEFAULTS["test_fraction"])),
            carve_seed=int(data.get("carve_seed", CARVE_DEFAULTS["carve_seed"])),
            written=copy.deepcopy(dict(data)),
        )
        defn._check()
        return defn

    def _check(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"datasets.{self.name}.kind: expected 'goemotions' or 'table', got {self.kind!r}")
        if self.mode not in ("single", "multi"):
            raise ConfigError(f"data.mode: expected 'single' or 'multi', got {self.mode!r}")
        if self.test not in ("natural", "balanced"):
            raise ConfigError(f"data.test: expected 'natural' or 'balanced', got {self.test!r}")
        if self.val_from not in ("subset", "source"):
            raise ConfigError(f"data.val_from: expected 'subset' or 'source', got {self.val_from!r}")
        if self.draw not in DRAWS:
            raise ConfigError(f"data.draw: expected one of {', '.join(DRAWS)}, got {self.draw!r}")
        unknown = [t for t in self.transforms if t not in TRANSFORMS]
        if unknown:
            raise ConfigError(f"data.transforms: unknown transform(s) {unknown}; "
                              f"expected some of {', '.join(TRANSFORMS)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction: expected a number in [0, 1), got {self.val_fraction}")
        if self.kind == "goemotions":
            taxonomy_labels(self.taxonomy)

    def as_json(self) -> dict:
        """The definition as written (the registry's dict, or the `--data` JSON), for the data rule."""
        return copy.deepcopy(dict(self.written))

    def with_hub_snapshot(self, snapshot: str, commit: str | None) -> DatasetDefinition:
        """The same definition read from a fetched snapshot of its hub repository (emogrid fetch)."""
        hub = self.hub or HubRef(None)
        return replace(self, hub=replace(hub, snapshot=snapshot, commit=commit))

    def known_label_names(self) -> list[str] | None:
        """Label names known without reading the data (taxonomy, label_names, label_columns), else None."""
        if self.kind == "goemotions":
            return taxonomy_labels(self.taxonomy)
        if self.label_names:
            return list(self.label_names)
        if self.label_columns:
            return list(self.label_columns)
        return None


def _strings(value) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)
