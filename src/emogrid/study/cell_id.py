"""One cell id: format, parse, short label and paths. Every module builds and reads ids here.

A cell id is ``{dataset}/{model}/{method}[/{variant}]/k{K}_n{N}/s{SEED}`` (docs/CONTRACTS.md).
``variant`` names the swept parameters the method reads: ``lora.r=8+train.lr=0.0001``
(dotted key ``=`` value, joined by ``+``, keys sorted), absent when nothing is swept.
Values are written by `format_value` (``1e-4`` -> ``0.0001``, ``16.0`` -> ``16``,
``True`` -> ``true``) and read back by `parse_value`.

Pure and light (no pandas, no torch): imported by the Snakefile at parse time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

BASE_AXES = ("dataset", "model", "method", "labels", "samples", "seed")
INT_AXES = ("labels", "samples", "seed")

_CELL_ID_RE = re.compile(
    r"^(?P<dataset>[^/]+)/(?P<model>[^/]+)/(?P<method>[^/]+)(?:/(?P<variant>[^/]+))?"
    r"/k(?P<labels>\d+)_n(?P<samples>\d+)/s(?P<seed>\d+)$"
)


def format_value(value: Any) -> str:
    """Path-safe, stable text for a swept value (1e-4 -> 0.0001, 16.0 -> 16, True -> true)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value).replace(",", "-")


def parse_value(text: str) -> Any:
    """Inverse of `format_value` where it can be: int, then float, then true/false, else text."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def format_variant(swept: dict[str, Any]) -> str:
    """``lora.r=8+train.lr=0.0001`` from {dotted key: value} (keys sorted); '' when empty."""
    return "+".join(f"{key}={format_value(swept[key])}" for key in sorted(swept))


def parse_variant(variant: str) -> dict[str, Any]:
    """{dotted key: value} from a variant string; '' gives {}."""
    out: dict[str, Any] = {}
    for part in variant.split("+") if variant else ():
        key, sep, value = part.partition("=")
        if sep:
            out[key] = parse_value(value)
    return out


def short_variant(variant: str) -> str:
    """'lora.alpha=16+lora.r=8' -> 'alpha=16 r=8' (display labels; ids keep full names)."""
    out = []
    for part in variant.split("+"):
        key, sep, value = part.partition("=")
        out.append(f"{key.rsplit('.', 1)[-1]}{sep}{value}")
    return " ".join(out)


def arm_label(method: str, variant: str, short: bool = False) -> str:
    """An arm (method + variant) for tables and figures: 'lora [lora.r=8]' ('lora [r=8]' short)."""
    if not variant:
        return str(method)
    return f"{method} [{short_variant(variant) if short else variant}]"


def subset_dir(dataset: str, k: int, n: int, seed: int) -> str:
    """Data subset folder of a cell, relative to the results directory."""
    return f"data/{dataset}/k{k}_n{n}_s{seed}"


@dataclass(frozen=True)
class CellId:
    """The identity of one grid cell; ``str(cell_id)`` is the id, `parse` reads it back."""

    dataset: str
    model: str
    method: str
    labels: int
    samples: int
    seed: int
    variant: str = ""

    def __str__(self) -> str:
        parts = [self.dataset, self.model, self.method] + ([self.variant] if self.variant else [])
        return "/".join(parts + [f"k{self.labels}_n{self.samples}", f"s{self.seed}"])

    @classmethod
    def from_axes(cls, axes: dict[str, Any]) -> CellId:
        """From a cell's axes: the six base axes plus every swept {dotted key: value}."""
        swept = {k: v for k, v in axes.items() if k not in BASE_AXES and k != "variant"}
        return cls(str(axes["dataset"]), str(axes["model"]), str(axes["method"]), int(axes["labels"]),
                   int(axes["samples"]), int(axes["seed"]), axes.get("variant") or format_variant(swept))

    @classmethod
    def parse(cls, text: str) -> CellId:
        """Read an id back; ValueError naming the expected layout when it is not one."""
        m = _CELL_ID_RE.match(text)
        if not m:
            raise ValueError(f"not a cell id: {text!r} (expected "
                             "{dataset}/{model}/{method}[/{variant}]/k{K}_n{N}/s{SEED})")
        g = m.groupdict()
        return cls(g["dataset"], g["model"], g["method"], int(g["labels"]), int(g["samples"]),
                   int(g["seed"]), g["variant"] or "")

    @property
    def swept(self) -> dict[str, Any]:
        """{dotted key: value} of the variant."""
        return parse_variant(self.variant)

    @property
    def axes(self) -> dict[str, Any]:
        """Base axes, the variant ('' when none) and every swept value."""
        return {"dataset": self.dataset, "model": self.model, "method": self.method,
                "variant": self.variant, "labels": self.labels, "samples": self.samples,
                "seed": self.seed, **self.swept}

    @property
    def label(self) -> str:
        """Short display label: 'model · method [r=8] · k=4, n=800, seed 0'."""
        return (f"{self.model} · {arm_label(self.method, self.variant, short=True)} · "
                f"k={self.labels}, n={self.samples}, seed {self.seed}")

    @property
    def run_dir(self) -> str:
        """Run folder, relative to the results directory."""
        return f"runs/{self}"

    @property
    def data_dir(self) -> str:
        """Data subset folder, relative to the results directory."""
        return subset_dir(self.dataset, self.labels, self.samples, self.seed)


def parse_cell_id(text: str) -> dict[str, Any]:
    """Axes of an id (`CellId.axes` without an empty variant), {} when `text` is not an id.

    For readers of folders that may hold anything (aggregate, status): no exception."""
    try:
        axes = CellId.parse(text).axes
    except ValueError:
        return {}
    if not axes["variant"]:
        del axes["variant"]
    return axes
