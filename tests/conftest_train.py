"""Fixtures for the training tests: tiny models (session-scoped) and data subsets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
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
        from emogrid.study.dataset_definition import DatasetDefinition

        prepare_subset(DatasetDefinition.from_json({"path": str(root), "taxonomy": "original", "mode": mode}),
                       k, n, seed, out_dir)
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


class BackgroundTrainings:
    """`emogrid train` processes that background threads run while the session goes on, `workers`
    at a time, each on one torch thread (OMP_NUM_THREADS=1, as one_torch_thread). `jobs`: key ->
    a callable that prepares the run and returns (the train command's arguments, its run dir)."""

    def __init__(self, jobs: dict, workers: int = 1):
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._stopping = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="training")
        self._futures = {key: self._pool.submit(self._run, job) for key, job in jobs.items()}

    def _run(self, job) -> tuple[int, Path]:
        args, out = job()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        with self._lock, open(f"{out}.stderr", "w") as err:
            if self._stopping:
                return -1, out
            proc = subprocess.Popen([sys.executable, "-m", "emogrid", "train", *args, "--out", str(out)], env=env,
                                    stdout=subprocess.DEVNULL, stderr=err)
            self._running.add(proc)
        code = proc.wait()
        with self._lock:
            self._running.discard(proc)
        return code, out

    def result(self, key) -> tuple[int, Path]:
        """(exit code, run directory) of `key`'s training, once it has ended."""
        return self._futures[key].result()

    def stop(self) -> None:
        """Drop the runs not started, kill the ones running (these processes only), join the threads."""
        with self._lock:
            self._stopping = True
            for proc in self._running:
                proc.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session", autouse=True)
def background_trainings(request, tmp_path_factory) -> dict:
    """Long trainings a test module declares (its `start_background(items, tmp_path_factory)`),
    started at the session's first test so that they run beside the rest of the suite, on the core
    it leaves idle; the module's tests then wait for their results. module name -> its
    BackgroundTrainings, or None where the module could not start them (its tests skip)."""
    items = request.session.items
    modules = {item.module for item in items if hasattr(getattr(item, "module", None), "start_background")}
    started = {module.__name__: module.start_background(items, tmp_path_factory) for module in modules}
    yield started
    for trainings in started.values():
        if trainings is not None:
            trainings.stop()


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
