"""Tuning: a study's `tune:` section as tuning cells, selection steps and tuned study cells.

A **group** is one choice: the cells that share the `tune.per` axes (default dataset, model,
method) and the grid's swept arm (`lora.r=8`: each arm is tuned on its own). Its
**candidates** are the combinations of the searched values that its method reads (a method
ignores a section it does not read, and keeps a value it pins under `methods.<m>` or
`models.<name>`, as grid sweeps do), in the order the config lists them.

* **Tuning cells**: every candidate of a group, on each of `tune.seeds` (and each value of the
  axes the group spans), trained like any cell but evaluated on the validation split only: the
  spec's `tuning` block tells `emogrid train` never to read test.jsonl. They live in
  `results/tune/cells/<budget>/<cell id>/` (budget `full`, or `1of3` ... under halving).
* **Selection** (`emogrid tune-select`, a Snakemake checkpoint): ranks the candidates by their
  mean validation metric and writes `results/tune/<group>.json` (and, under halving, one
  `<group>.rung<r>.json` per earlier rung: which candidates go on).
* **Study cells**: the grid's cells, with the chosen values in their spec (`tuned`), over
  `grid.seeds`, evaluated on test. Their ids are those of the untuned grid, so tables keep one
  row per method; a changed choice changes the spec and reruns exactly those cells.

Successive halving (`tune.halving: {eta, rungs}`): rung r trains its candidates on
eta^-(rungs-1-r) of `train.epochs` and keeps the best ceil(n/eta); the last rung trains on
the full budget. Each rung **restarts** its candidates from the pretrained model rather than
resuming the previous rung's run: the learning-rate schedule (cosine, linear, warmup) and
early stopping are fractions of the whole run, so a short run resumed would either have
annealed to zero already or be scored mid-schedule, at a learning rate the full run never
ends on. Restarting makes every rung a complete, smaller version of the final run (it costs
the previous rung's budget again, a 1/eta share). A rung left with one candidate is not
trained: there is nothing left to choose.

Pure and light (the Snakefile calls it at parse time); reads only the choice files.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from emogrid.study.arms import arm_configs
from emogrid.study.cell_id import format_variant
from emogrid.study.grid import Cell, config_hash, expand_cells, find_sweeps
from emogrid.study.results_dir import study_results_dir
from emogrid.study.spec_sections import MethodSpec, TrainRecipe
from emogrid.study.tune_config import DEFAULT_PER, method_params, tune_section

AXIS_ORDER = ("dataset", "model", "method", "labels", "samples")
FULL = "full"
TIE_RULE = ("highest mean validation {metric} over the group's tuning cells; a candidate with a failed, "
            "diverged or untrained cell ranks below every healthy one; equal means (to 1e-9) go to the "
            "candidate listed first in the config")


@dataclass(frozen=True)
class Group:
    """One choice: its name (the path under results/tune), axes and candidates."""

    name: str
    axes: dict = field(hash=False)  # the tune.per axes, plus "arm": the grid's swept variant ('' if none)
    keys: tuple = ()  # the tuned keys its candidates set
    candidates: tuple = field(default=(), hash=False)  # ({key: value}, ...) in config order
    metric: str = "accuracy"
    methods: tuple = ()

    def label(self, values: dict) -> str:
        return format_variant(values)


def budget_label(fraction_denominator: int) -> str:
    """`full` for the whole budget, `1of3` for a third of it (a folder name)."""
    return FULL if fraction_denominator == 1 else f"1of{fraction_denominator}"


def budget_fraction(label: str) -> float:
    if label == FULL:
        return 1.0
    if not label.startswith("1of") or not label[3:].isdigit():
        raise ValueError(f"not a tuning budget: {label!r} (expected 'full' or '1of<N>')")
    return 1.0 / int(label[3:])


def rung_sizes(n: int, eta: int | None, rungs: int) -> list[int]:
    """Candidates per rung: n, then ceil(previous / eta) while more than one is left to choose from."""
    sizes = [n]
    while eta and len(sizes) < rungs:
        nxt = math.ceil(sizes[-1] / eta)
        if nxt < 2:
            break
        sizes.append(nxt)
    return sizes


class Tuning:
    """The tuning of one study config; `enabled` is False without `tune:` (then every method
    returns the grid's own cells unchanged)."""

    def __init__(self, config: dict, results: str | Path | None = None):
        self.config = config
        self.results = study_results_dir(config) if results is None else Path(results)
        self.tune = tune_section(config)
        self.enabled = self.tune is not None
        self.groups: dict[str, Group] = {}
        self._cells: dict[str, Cell] = {}  # tuning cell id -> cell at the full budget (no `tuning` block yet)
        self._members: dict[tuple[str, str], list[str]] = {}  # (group, candidate label) -> tuning cell ids
        self._final_cache: dict[tuple, Cell] = {}
        if not self.enabled:
            return
        self.per = tuple(a for a in AXIS_ORDER if a in (self.tune.get("per") or DEFAULT_PER))
        halving = self.tune.get("halving") or {}
        self.eta = halving.get("eta")
        self.rungs = int(halving.get("rungs", 1))
        self._grid_sweeps = set(find_sweeps(config))
        self._expand()

    # ------------------------------------------------------------ expansion

    def _expand(self) -> None:
        found: dict[str, dict] = {}
        # each arm of the study (emogrid.study.arms) tunes the (model, method) pairs it runs
        pairs = [(arm, model, method) for arm in arm_configs(self.config)
                 for model, method in itertools.product(arm["grid"]["models"], arm["grid"]["methods"])]
        for arm, model, method in pairs:
            params = method_params(self.tune, method)
            tuned_config = copy.deepcopy(arm)
            tuned_config["grid"] = {**arm["grid"], "models": [model], "methods": [method],
                                    "seeds": list(self.tune["seeds"])}
            explicit = (self.tune.get("methods") or {}).get(method, {})
            for key, values in params.items():
                if key in explicit:  # a per-method search list wins over the value the method pins
                    _unpin(tuned_config, model, method, key)
                section, leaf = key.split(".", 1)
                tuned_config[section][leaf] = list(values)
            for cell in expand_cells(tuned_config):
                keys = [k for k in sorted(params) if k in cell.axes]
                if not keys:
                    continue  # the method reads (or keeps) none of the tuned keys: nothing to choose
                name, axes = self._group_of(cell.axes)
                metric = self.tune.get("metric") or TrainRecipe.from_spec(cell.spec).metric
                entry = found.setdefault(name, {"axes": axes, "values": {}, "methods": [], "cells": [],
                                                "metric": metric})
                if method not in entry["methods"]:
                    entry["methods"].append(method)
                for key in keys:  # each key's values in the order the config lists them
                    entry["values"].setdefault(key, {}).update(dict.fromkeys(params[key]))
                if cell.cell_id not in self._cells:  # arms may overlap: a cell is one job
                    entry["cells"].append((cell.cell_id, {k: cell.axes[k] for k in keys}))
                    self._cells[cell.cell_id] = cell
        for name, entry in found.items():
            keys = tuple(sorted(entry["values"]))
            # a group spanning methods that read different keys (tune.per without `method`):
            # its candidates set every key; each cell counts for the candidates it agrees with
            candidates = tuple(dict(zip(keys, combo))
                               for combo in itertools.product(*(list(entry["values"][k]) for k in keys)))
            group = Group(name=name, axes=entry["axes"], keys=keys, candidates=candidates,
                          metric=entry["metric"], methods=tuple(entry["methods"]))
            self.groups[name] = group
            for values in candidates:
                self._members[(name, group.label(values))] = [
                    cid for cid, own in entry["cells"] if all(values[k] == v for k, v in own.items())]

    def _group_of(self, axes: dict) -> tuple[str, dict]:
        """(name, axes) of the group a cell (tuning or study) belongs to."""
        chosen = {a: axes[a] for a in self.per}
        arm = format_variant({k: v for k, v in axes.items() if k in self._grid_sweeps})
        parts = []
        for a in self.per:
            value = axes[a]
            parts.append(f"k{value}" if a == "labels" else f"n{value}" if a == "samples" else str(value))
        if arm:
            parts.append(arm)
        return "/".join(parts) or "all", {**chosen, "arm": arm}

    # ------------------------------------------------------------ halving

    def sizes(self, group: str) -> list[int]:
        """Candidates trained at each rung of a group (one entry without halving)."""
        return rung_sizes(len(self.groups[group].candidates), self.eta, self.rungs)

    def budget(self, rung: int) -> str:
        """The budget label of rung `rung` (rung rungs-1 is the full budget)."""
        return budget_label((self.eta or 1) ** (self.rungs - 1 - rung))

    def last_rung(self, group: str) -> int:
        return len(self.sizes(group)) - 1

    def tuned_groups(self) -> list[str]:
        """Groups with a choice to make (more than one candidate)."""
        return [name for name, g in self.groups.items() if len(g.candidates) > 1]

    # ------------------------------------------------------------ cells

    def cells(self, group: str, rung: int, labels: list[str] | None = None) -> list[Cell]:
        """The tuning cells of `group` at `rung`, for the candidates `labels` (default: all)."""
        g = self.groups[group]
        labels = labels if labels is not None else [g.label(v) for v in g.candidates]
        budget = self.budget(rung)
        ids = dict.fromkeys(cid for label in labels for cid in self._members[(group, label)])
        return [self.tune_cell(budget, cid) for cid in ids]

    def all_cells(self) -> list[Cell]:
        """Every tuning cell the first rung may train (for checks such as target modules)."""
        return list(self._cells.values())

    def tune_cell(self, budget: str, cell_id: str) -> Cell:
        """A tuning cell at a budget: the grid's spec plus `tuning` (validation only, epochs share)."""
        base = self._cells.get(cell_id)
        if base is None:
            raise KeyError(f"{cell_id} is not a tuning cell of this study")
        spec = copy.deepcopy(base.spec)
        spec["tuning"] = {"budget": budget_fraction(budget)}
        spec["config_hash"] = config_hash(spec)
        return Cell(cell_id=cell_id, axes=base.axes, spec=spec)

    def run_dir(self, budget: str, cell_id: str) -> str:
        """A tuning cell's folder, relative to the working directory."""
        return f"{self.results}/tune/cells/{budget}/{cell_id}"

    # ------------------------------------------------------------ selection

    def choice_path(self, group: str) -> Path:
        return self.results / "tune" / f"{group}.json"

    def rung_path(self, group: str, rung: int) -> Path:
        return self.results / "tune" / f"{group}.rung{rung}.json"

    def select_job(self, group: str, rung: int, labels: list[str] | None = None) -> dict:
        """What `emogrid tune-select` needs for one rung: the candidates, their cells, the rule."""
        g = self.groups[group]
        by_label = {g.label(v): v for v in g.candidates}
        labels = labels if labels is not None else list(by_label)
        sizes = self.sizes(group)
        last = rung == len(sizes) - 1
        return {"group": group, "axes": g.axes, "keys": list(g.keys), "methods": list(g.methods),
                "metric": g.metric, "split": "val", "rung": rung, "rungs": len(sizes),
                "budget": self.budget(rung), "eta": self.eta,
                "keep": 1 if last else sizes[rung + 1],
                "rule": TIE_RULE.format(metric=g.metric),
                "candidates": [{"label": label, "values": by_label[label],
                                "cells": [self.run_dir(self.budget(rung), cid)
                                          for cid in self._members[(group, label)]]} for label in labels]}

    def kept(self, group: str, rung: int) -> list[str]:
        """The candidate labels rung `rung` passed on (read from its rung file)."""
        data = read_json(self.rung_path(group, rung))
        if not data or not isinstance(data.get("kept"), list):
            raise FileNotFoundError(str(self.rung_path(group, rung)))
        return [str(label) for label in data["kept"]]

    def choice(self, group: str) -> dict | None:
        """The chosen {key: value} of a group, None while it is not chosen."""
        data = read_json(self.choice_path(group))
        values = data.get("choice") if isinstance(data, dict) else None
        g = self.groups[group]
        if not isinstance(values, dict) or g.label(values) not in {g.label(v) for v in g.candidates}:
            return None  # missing, damaged, or chosen among other candidates: the choice is redone
        return values

    # ------------------------------------------------------------ study cells

    def group_of(self, cell: Cell) -> str | None:
        """The group whose choice a study cell takes, None when nothing of it is tuned."""
        if not self.enabled:
            return None
        name, _ = self._group_of(cell.axes)
        return name if name in self.groups else None

    def final(self, cell: Cell) -> Cell:
        """A study cell with its group's chosen values in its spec (`tuned`). Before the choice
        exists the spec says `tuned: {"pending": <choice file>}`, which `emogrid train` refuses:
        a study cell never trains with a value nobody chose."""
        group = self.group_of(cell)
        if group is None:
            return cell
        g = self.groups[group]
        values = g.candidates[0] if len(g.candidates) == 1 else self.choice(group)
        if values is None:
            spec = {**copy.deepcopy(cell.spec), "tuned": {"pending": str(self.choice_path(group))}}
            spec["config_hash"] = config_hash(spec)
            return Cell(cell_id=cell.cell_id, axes=cell.axes, spec=spec)
        key = (cell.cell_id, json.dumps(values, sort_keys=True))
        if key not in self._final_cache:
            self._final_cache[key] = self._with_values(cell, values)
        return self._final_cache[key]

    def _with_values(self, cell: Cell, values: dict) -> Cell:
        """The grid's own expansion of this cell with the values set: every section and the
        LoRA+ ratio come out exactly as an untuned study with those values would have them."""
        axes = cell.axes
        match = []
        for arm in arm_configs(self.config):  # the arm(s) that hold this cell
            grid = arm["grid"]
            if axes["model"] not in grid["models"] or axes["method"] not in grid["methods"]:
                continue
            config = copy.deepcopy(arm)
            config["grid"] = {**grid, "models": [axes["model"]], "methods": [axes["method"]],
                              "labels": [axes["labels"]], "samples": [axes["samples"]], "seeds": [axes["seed"]]}
            for key, value in values.items():
                _unpin(config, axes["model"], axes["method"], key)  # tuned: the chosen value, as it was searched
                section, leaf = key.split(".", 1)
                config[section][leaf] = value
            match = [c for c in expand_cells(config) if c.cell_id == cell.cell_id]
            if match:
                break
        if len(match) != 1:
            raise RuntimeError(f"tuning: {cell.cell_id} not found when expanded with {values} (a bug in emogrid)")
        spec = copy.deepcopy(match[0].spec)
        spec["tuned"] = {k: values[k] for k in sorted(values) if _reads(spec, k)}
        spec["config_hash"] = config_hash(spec)
        return Cell(cell_id=cell.cell_id, axes=cell.axes, spec=spec)


def _unpin(config: dict, model: str, method: str, key: str) -> None:
    """Drop a value that `methods.<method>` or `models.<model>` sets for a dotted key."""
    section, leaf = key.split(".", 1)
    for entry in ((config.get("methods") or {}).get(method), (config.get("models") or {}).get(model)):
        if isinstance(entry, dict) and isinstance(entry.get(section), dict):
            entry[section].pop(leaf, None)


def _reads(spec: dict, key: str) -> bool:
    """Whether a cell spec carries the section of a dotted key (LoRA+'s ratio lives in `method`)."""
    section = key.split(".", 1)[0]
    return section in spec or (section == "loraplus" and MethodSpec.from_spec(spec).loraplus_ratio is not None)


def read_json(path: str | Path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def tuned_cells(config: dict, cells: list[Cell], results: str | Path | None = None) -> list[Cell]:
    """The study's cells with the choices made so far (unchanged without `tune:`)."""
    tuning = Tuning(config, results)
    return [tuning.final(c) for c in cells] if tuning.enabled else cells
