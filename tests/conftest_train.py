"""Fixtures for the training tests: tiny models (session-scoped) and data subsets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_models import FAMILIES, NEW_FAMILIES, build_tiny_model  # noqa: E402

_SYNTH = ["I love this, thank you so much", "this is so sad and I am sorry", "wow I did not expect that at all"]


def real_data_root() -> Path | None:
    from helpers import data_dir

    return data_dir()


def make_subset(out_dir: Path, k: int, n: int, seed: int = 0, mode: str = "single") -> Path:
    """A subset via emogrid.data.subset_writer.prepare_subset on the real data, or a synthetic one per the contract."""
    root = real_data_root()
    if root is not None:
        from emogrid.data.subset_writer import prepare_subset

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


@pytest.fixture()
def one_torch_thread(monkeypatch):
    """One torch thread (and OMP_NUM_THREADS=1 for the CLI subprocesses run_cell starts): tiny
    tensors gain nothing from more threads, which only contend on shared cores."""
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """family -> directory of a tiny random model saved like a hub checkout."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {family: build_tiny_model(family, root / family) for family in FAMILIES + NEW_FAMILIES}


def truncate_test(subset: Path, rows: int) -> Path:
    """Keep the first `rows` test examples (tiny models only need a smoke-sized test split)."""
    path = subset / "test.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:rows]))
    return subset


@pytest.fixture(scope="session")
def tiny_subset(tmp_path_factory) -> Path:
    """3 labels x 60 examples (single-label, test cut to 90), shared by the tiny-model cells."""
    return truncate_test(make_subset(tmp_path_factory.mktemp("data") / "k3_n60_s0", 3, 60), 90)


def cell_spec(model_dir, method: str, targets: str = "attention", *, k: int = 3, n: int = 60,
              seed: int = 0, mode: str = "single", **train) -> dict:
    """A cell spec per docs/CONTRACTS.md for a local model dir and a built-in method."""
    from emogrid.study.methods import BUILTIN_METHODS, method_spec
    from emogrid.study.schema import section_defaults

    # complete like a grid spec: the schema's defaults (less the global report_to), the method's
    # optimizer folded in as the grid does (QLoRA: adamw_8bit), then this test's values
    train_block = {k: v for k, v in section_defaults("train").items() if k != "report_to"}
    train_block.update({"batch_size": 8, "grad_accum": 1, "lr": 1e-2, "scheduler": "cosine", "warmup_ratio": 0.0,
                        "epochs": 2, "patience": 2, "metric": "accuracy", "weight_decay": 0.01, "max_grad_norm": 1.0,
                        "precision": "auto", "optim": BUILTIN_METHODS[method].optim or "adamw",
                        "eval_batch_size": 256, "max_length": 64, "save_adapter": False, "train_head": True})
    train_block.update(train)
    return {
        "cell": {"dataset": "goemotions", "model": Path(model_dir).name, "method": method, "labels": k,
                 "samples": n, "seed": seed},
        "cell_id": f"goemotions/{Path(model_dir).name}/{method}/k{k}_n{n}/s{seed}",
        "model": {"name": Path(model_dir).name, "id": None, "path": str(model_dir), "revision": None,
                  "trust_remote_code": False},
        "method": method_spec(method, BUILTIN_METHODS[method], {"loraplus": {"ratio": 16}}),
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "targets": targets, "head": "full"},
        "ia3": {"targets": targets},
        "adalora": {"init_r": 6, "target_r": 4, "tinit": 0, "tfinal": 0, "delta_t": 1},
        "quant": {"double_quant": True, "compute_dtype": "auto"},
        "train": train_block,
        "data": {"mode": mode, "threshold": 0.5},
    }
