"""Datasets as a grid axis: their definitions and the loaders that read them into `Split`s.

`registry.resolve_dataset(name, config)` turns a name of `grid.datasets` into a complete,
JSON-able definition; `goemotions.load_source` (GoEmotions, kind `goemotions`) and
`table.load_table` (any other, kind `table`) read it, through `reader` (the one door to
`datasets.load_dataset`), into the `splits.Loaded` that `emogrid.subset_selection` draws from.
"""
