"""The in-memory shape every dataset loader returns: `Split`s gathered in a `Loaded`.

GoEmotions (`emogrid.data.goemotions`) and any table (`emogrid.data.table`) are read
into these; subset selection (`emogrid.data.subset_selection`) draws from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Split:
    """One split as parallel lists; `labels[i]` is a tuple of label ids, ascending."""

    name: str  # where it came from, for messages: the file path or the hub split
    texts: list[str] = field(default_factory=list)
    labels: list[tuple[int, ...]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Loaded:
    """A dataset's checked splits, its label names and where it came from (for the manifest)."""

    train: Split
    test: Split
    source_manifest: dict
    names: list[str]  # label names in id order
    val: Split | None = None  # the source's own validation split, read and checked (subsets
    #                           draw their validation rows from the n examples instead)
