"""Subset selection: which k labels, and which rows of each split, one (k, n, seed) subset holds.

Pure: a loaded dataset (`emogrid.data.splits.Loaded`) in, rows out; nothing is read or
written here (`emogrid.data.subset_writer` does both). The label lists are the dataset's
(GoEmotions: the taxonomy), and the labels never picked by frequency are its
`exclude_labels` (GoEmotions: neutral).

Selection rules, all driven by one `numpy.random.Generator(seed)` in a fixed order:

* labels: the explicit `data.labels` (its first k, in the order given), else the k most
  frequent non-neutral labels of the train split (ties by label id), listed in id order.
  "Most frequent" counts the pool the mode draws from: single-label comments in single mode,
  comments carrying the label in multi mode.
* single mode: comments whose only label is one of the k. n is split across the labels as
  n // k each, the first n % k labels (manifest order) taking one more.
* multi mode: comments with at least one of the k labels, labels restricted to those k.
  Each label gets the same quota as above; comments are drawn round-robin (rarest label
  first in each round), each comment at most once, so label counts are approximately equal.
* `draw: natural` (instead of the balanced quotas above): n rows drawn at random from the
  pool (single: the single-label rows of the k labels; multi: rows with at least one), so
  the labels keep the split's own distribution; `draw: all`: every row of the pool, the
  whole split restricted to the k labels (n must be the pool's size: the cell says what it
  trained on). Validation is then stratified by each row's label (multi: its first chosen
  label), and `val_from: source` draws its rows the same way (all: the whole split).
* val: round(n * val_fraction) rows (at least 1 when val_fraction > 0), allocated across
  the labels (the label a row was drawn for) by largest remainder, ties by label order.
  `val_from: subset` carves them out of the n drawn rows (n - v train); `val_from: source`
  draws them from the source's own validation split, per label as the train rows are drawn
  (single: its single-label rows; multi: round-robin), after the train draw, and all n train.
* test: the official test split restricted the same way; `natural` keeps every such row,
  `balanced` draws the same number per label, capped by the rarest label.
* every split is shuffled; no other ordering.
"""

from __future__ import annotations

from emogrid.data.splits import Loaded, Split
from emogrid.errors import DataError
from emogrid.study.dataset_definition import DatasetDefinition
from emogrid.study.taxonomies import NEUTRAL, taxonomy_labels


def label_frequencies(split: Split, mode: str) -> dict[int, int]:
    """label id -> number of comments in the pool of `mode` (single-label rows / rows carrying it)."""
    counts: dict[int, int] = {}
    for labs in split.labels:
        if mode == "single" and len(labs) != 1:
            continue
        for lab in labs:
            counts[lab] = counts.get(lab, 0) + 1
    return counts


def select_labels(train: Split, taxonomy: str | list[str], mode: str, k: int,
                  explicit: list[str] | tuple[str, ...] | None,
                  exclude: list[str] | tuple[str, ...] = (NEUTRAL,), dataset: str | None = None) -> list[int]:
    """The k label ids of the subset (see module docstring).

    `taxonomy` is a GoEmotions taxonomy name or the dataset's label names in id order;
    `exclude` names labels never picked by frequency (GoEmotions' neutral).
    """
    names = taxonomy_labels(taxonomy) if isinstance(taxonomy, str) else list(taxonomy)
    what = f"taxonomy {taxonomy!r}" if isinstance(taxonomy, str) else f"dataset {dataset!r}"
    key = "data.labels" if isinstance(taxonomy, str) else f"datasets.{dataset}.labels"
    if k < 1:
        raise DataError(f"labels k = {k}: expected at least 1")
    if explicit:
        unknown = [x for x in explicit if x not in names]
        if unknown:
            raise DataError(f"{key}: unknown label(s) {unknown} for {what}; expected names from {names}")
        dupes = sorted({x for x in explicit if explicit.count(x) > 1})
        if dupes:
            raise DataError(f"{key}: {dupes} listed more than once")
        if k > len(explicit):
            raise DataError(f"labels k = {k} but {key} lists only {len(explicit)}: {list(explicit)}")
        return [names.index(x) for x in explicit[:k]]
    counts = label_frequencies(train, mode)
    candidates = [i for i, name in enumerate(names) if name not in exclude]
    if k > len(candidates):
        kind = f"non-{'/'.join(exclude)} labels" if exclude else "labels"
        raise DataError(f"labels k = {k}: {what} has only {len(candidates)} {kind}")
    ranked = sorted(candidates, key=lambda i: (-counts.get(i, 0), i))
    return sorted(ranked[:k])


def _quotas(total: int, k: int) -> list[int]:
    return [total // k + (1 if i < total % k else 0) for i in range(k)]


def _allocate(total: int, weights: list[int]) -> list[int]:
    """Split `total` proportionally to `weights` by largest remainder (ties: earlier first)."""
    s = sum(weights)
    if s == 0:
        return [0] * len(weights)
    exact = [total * w / s for w in weights]
    base = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - base[i]), i))
    for i in order[: total - sum(base)]:
        base[i] += 1
    return base


def _val_size(n: int, val_fraction: float) -> int:
    if val_fraction <= 0:
        return 0
    v = int(n * val_fraction + 0.5)
    return min(max(v, 1), n - 1)


def _too_few(problems: list[str], file: str, k: int, n: int, what: str) -> DataError:
    return DataError(
        f"{file}: too few {what} for k={k}, n={n}: " + "; ".join(problems),
        hint="lower the samples axis, pick other labels, or use fewer labels",
    )


def _draw_single(rng, split: Split, chosen: list[int], quotas: list[int] | None) -> list[list[int]]:
    """Per chosen label, row indices of single-label rows in draw order (quota or all)."""
    pools: list[list[int]] = [[] for _ in chosen]
    pos = {lab: j for j, lab in enumerate(chosen)}
    for i, labs in enumerate(split.labels):
        if len(labs) == 1 and labs[0] in pos:
            pools[pos[labs[0]]].append(i)
    out = []
    for j, pool in enumerate(pools):
        size = len(pool) if quotas is None else quotas[j]
        picks = rng.choice(len(pool), size=size, replace=False) if size else []
        out.append([pool[int(p)] for p in picks])
    return out


def _pool(split: Split, chosen: list[int], mode: str) -> list[int]:
    """Row indices a natural draw picks from: single-label rows of the chosen labels (single
    mode), rows carrying at least one of them (multi)."""
    wanted = set(chosen)
    if mode == "single":
        return [i for i, labs in enumerate(split.labels) if len(labs) == 1 and labs[0] in wanted]
    return [i for i, labs in enumerate(split.labels) if wanted.intersection(labs)]


def _natural(rng, split: Split, chosen: list[int], mode: str, size: int | None) -> list[list[int]]:
    """`size` rows of the pool at random (None: every row, in random order), grouped by label
    (a multi-label row by its first chosen label) so validation can be stratified."""
    pool = _pool(split, chosen, mode)
    picks = rng.permutation(len(pool)) if size is None else rng.choice(len(pool), size=size, replace=False)
    pos = {lab: j for j, lab in enumerate(chosen)}
    groups: list[list[int]] = [[] for _ in chosen]
    for p in picks:
        i = pool[int(p)]
        groups[min(pos[lab] for lab in split.labels[i] if lab in pos)].append(i)
    return groups


def _multi_candidates(rng, split: Split, chosen: list[int]) -> list[list[int]]:
    cands: list[list[int]] = [[] for _ in chosen]
    pos = {lab: j for j, lab in enumerate(chosen)}
    for i, labs in enumerate(split.labels):
        for lab in labs:
            if lab in pos:
                cands[pos[lab]].append(i)
    return [[c[int(p)] for p in rng.permutation(len(c))] for c in cands]


def _round_robin(cands: list[list[int]], quotas: list[int], strict: bool) -> tuple[list[list[int]], int | None]:
    """Draw comments round-robin, rarest label first; each comment once.

    Returns per-label drawn rows and, if `strict` and a label ran dry, its position.
    """
    order = sorted(range(len(cands)), key=lambda j: (len(cands[j]), j))
    taken: set[int] = set()
    ptr = [0] * len(cands)
    drawn: list[list[int]] = [[] for _ in cands]
    active = [j for j in order if quotas[j] > 0]
    while active:
        still = []
        for j in active:
            c = cands[j]
            while ptr[j] < len(c) and c[ptr[j]] in taken:
                ptr[j] += 1
            if ptr[j] == len(c):
                if strict:
                    return drawn, j
                continue
            taken.add(c[ptr[j]])
            drawn[j].append(c[ptr[j]])
            ptr[j] += 1
            if len(drawn[j]) < quotas[j]:
                still.append(j)
        active = still
    return drawn, None


def _rows(split: Split, indices, chosen: list[int], rng) -> list[dict]:
    pos = {lab: j for j, lab in enumerate(chosen)}
    order = [indices[int(p)] for p in rng.permutation(len(indices))]
    return [
        {
            "id": split.ids[i],
            "text": split.texts[i],
            "labels": sorted(pos[lab] for lab in split.labels[i] if lab in pos),
        }
        for i in order
    ]


def _source_val(loaded: Loaded, name: str) -> Split:
    if loaded.val is None:
        raise DataError(f"dataset '{name}': val_from: source, but the source has no validation split "
                        f"(splits: {loaded.source_manifest.get('splits', 'train, test')})",
                        hint="use val_from: subset (validation carved from the n examples), or name the "
                             f"split: datasets.{name}.splits.val")
    return loaded.val


def _draw_val(rng, val: Split, chosen: list[int], sizes: list[int], mode: str, names: list[str], unit: str,
              what: str) -> list[list[int]]:
    """Per chosen label, `sizes` rows of the source's validation split, drawn like the train rows."""
    counts = label_frequencies(val, mode)

    def too_few(problems: list[str]) -> DataError:
        return DataError(f"{val.name}: too few {what} for k={len(chosen)}, {sum(sizes)} validation rows: "
                         + "; ".join(problems),
                         hint="lower the samples axis or val_fraction, or carve validation from the n "
                              "examples (val_from: subset)")

    short = [f"label '{names[lab]}' has {counts.get(lab, 0)} {what} in the validation split, {q} needed"
             for lab, q in zip(chosen, sizes) if counts.get(lab, 0) < q]
    if short:
        raise too_few(short)
    if mode == "single":
        return _draw_single(rng, val, chosen, sizes)
    drawn, dry = _round_robin(_multi_candidates(rng, val, chosen), sizes, strict=True)
    if dry is not None:
        raise too_few([f"label '{names[chosen[dry]]}' has only {len(drawn[dry])} {unit} left in the validation "
                       f"split after the other labels' draws, {sizes[dry]} needed"])
    return drawn


def build_subset(loaded: Loaded, defn: DatasetDefinition, k: int, n: int,
                 seed: int) -> tuple[list[int], dict[str, list[dict]]]:
    """Select labels and draw train/val/test rows. Pure: no files written."""
    import numpy as np

    mode, train, names = defn.mode, loaded.train, loaded.names
    chosen = select_labels(train, defn.taxonomy if defn.kind == "goemotions" else names, mode, k, defn.labels,
                           defn.exclude_labels, dataset=defn.name)
    k = len(chosen)
    if n < k:
        raise DataError(f"samples n = {n} is smaller than labels k = {k}; expected at least one example per label")
    quotas = _quotas(n, k)
    rng = np.random.default_rng(seed)
    counts = label_frequencies(train, mode)
    unit = "comments" if defn.kind == "goemotions" else "examples"
    what = f"single-label {unit}" if mode == "single" else unit
    if defn.draw != "balanced":
        drawn = _natural_train(rng, train, chosen, mode, n, defn.draw, what)
        return chosen, _finish(loaded, defn, rng, chosen, drawn, [len(d) for d in drawn], n, names, unit, what)
    short = [
        f"label '{names[lab]}' has {counts.get(lab, 0)} {what} in the train split, {q} needed"
        for lab, q in zip(chosen, quotas)
        if counts.get(lab, 0) < q
    ]
    if short:
        raise _too_few(short, train.name, k, n, what)

    if mode == "single":
        drawn = _draw_single(rng, train, chosen, quotas)
    else:
        drawn, dry = _round_robin(_multi_candidates(rng, train, chosen), quotas, strict=True)
        if dry is not None:
            lab = chosen[dry]
            raise _too_few(
                [
                    f"label '{names[lab]}' has {counts.get(lab, 0)} {unit} in the train split, but "
                    f"only {len(drawn[dry])} are left after the other labels' draws, {quotas[dry]} needed"
                ],
                train.name, k, n, what,
            )

    return chosen, _finish(loaded, defn, rng, chosen, drawn, quotas, n, names, unit, what)


def _natural_train(rng, train: Split, chosen: list[int], mode: str, n: int, draw: str, what: str) -> list[list[int]]:
    """The train rows of a natural draw (n at random) or of `all` (every row; n must say how many)."""
    available = len(_pool(train, chosen, mode))
    if draw == "all" and available != n:
        raise DataError(f"{train.name}: data.draw all takes every {what} of the k={len(chosen)} labels, {available}, "
                        f"but the samples axis says n={n}",
                        hint=f"set this dataset's samples to [{available}] (grid.arms can give each dataset its own)")
    if available < n:
        raise DataError(f"{train.name}: too few {what} for k={len(chosen)}, n={n}: the labels have {available}",
                        hint="lower the samples axis, or use data.draw: all")
    return _natural(rng, train, chosen, mode, None if draw == "all" else n)


def _finish(loaded: Loaded, defn: DatasetDefinition, rng, chosen: list[int], drawn: list[list[int]],
            weights: list[int], n: int, names: list[str], unit: str, what: str) -> dict[str, list[dict]]:
    """Validation (carved from the drawn rows or drawn from the source's own split), the test rows,
    and every split's rows, shuffled."""
    mode, train, test, k, draw = defn.mode, loaded.train, loaded.test, len(chosen), defn.draw
    val_sizes = _allocate(_val_size(n, defn.val_fraction), weights)
    if defn.val_from == "source" and draw != "balanced":
        val_split = _source_val(loaded, defn.name)
        size = None if draw == "all" else sum(val_sizes)
        pool = len(_pool(val_split, chosen, mode))
        if size is not None and pool < size:
            raise DataError(f"{val_split.name}: too few {what} for k={k}, {size} validation rows: the labels have "
                            f"{pool}", hint="lower the samples axis or val_fraction, or use data.draw: all")
        val_idx = [i for d in _natural(rng, val_split, chosen, mode, size) for i in d]
        train_idx = [i for d in drawn for i in d]
    elif defn.val_from == "source":
        val_split = _source_val(loaded, defn.name)
        val_idx = [i for d in _draw_val(rng, val_split, chosen, val_sizes, mode, names, unit, what) for i in d]
        train_idx = [i for d in drawn for i in d]
    else:
        val_split = train
        val_idx = [i for d, v in zip(drawn, val_sizes) for i in d[:v]]
        train_idx = [i for d, v in zip(drawn, val_sizes) for i in d[v:]]

    if mode == "single":
        per_label = _draw_single(rng, test, chosen, None)
        if defn.test == "balanced":
            cap = min(len(p) for p in per_label)
            per_label = [p[:cap] for p in per_label]
    else:
        cands = _multi_candidates(rng, test, chosen)
        if defn.test == "balanced":
            cap = min(len(c) for c in cands)
            per_label, _ = _round_robin(cands, [cap] * k, strict=False)
        else:
            seen: set[int] = set()
            per_label = [[i for i in c if not (i in seen or seen.add(i))] for c in cands]
    test_idx = [i for p in per_label for i in p]
    present = {lab for i in test_idx for lab in test.labels[i]}
    empty = [names[lab] for lab in chosen if lab not in present]
    if empty:
        raise DataError(f"{test.name}: no {what} for label(s) {empty} in the test split; expected at least one each")

    return {
        "train": _rows(train, train_idx, chosen, rng),
        "val": _rows(val_split, val_idx, chosen, rng),
        "test": _rows(test, test_idx, chosen, rng),
    }
