"""Fixtures for the training tests: tiny models (session-scoped) and data subsets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_models import FAMILIES, build_tiny_model  # noqa: E402

_SYNTH = ["I love this, thank you so much", "this is so sad and I am sorry", "wow I did not expect that at all"]


def real_data_root() -> Path | None:
    from helpers import data_dir

    return data_dir()


def make_subset(out_dir: Path, k: int, n: int, seed: int = 0, mode: str = "single") -> Path:
    """A subset via emogrid.data.prepare_subset on the real data, or a synthetic one per the contract."""
    root = real_data_root()
    if root is not None:
        from emogrid.data import prepare_subset

        prepare_subset({"path": str(root), "taxonomy": "original", "mode": mode}, k, n, seed, out_dir)
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"x{i}", "text": f"{_SYNTH[i % k % 3]} number {i}", "labels": [i % k]} for i in range(n + 40)]
    for split, part in (("train", rows[: n - n // 10]), ("val", rows[n - n // 10: n]), ("test", rows[n:])):
        (out_dir / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    manifest = {"dataset": "synthetic", "mode": mode, "labels": [f"label{j}" for j in range(k)], "k": k, "n": n,
                "seed": seed, "checksum": "synthetic"}
    (out_dir / "manifest.json").write_text(json.dumps(manifest))
    return out_dir


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """family -> directory of a tiny random model saved like a hub checkout."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {family: build_tiny_model(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="session")
def tiny_subset(tmp_path_factory) -> Path:
    """3 labels x 60 examples (single-label), shared by the tiny-model cells."""
    return make_subset(tmp_path_factory.mktemp("data") / "k3_n60_s0", 3, 60)
