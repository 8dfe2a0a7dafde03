"""Faults of the whole run, on the real Snakefile through profiles/workstation:

* interrupting `snakemake` (Ctrl-C, or a hard kill + `--unlock`) and starting it again finishes
  the grid without redoing any completed cell;
* nothing a failure does (a failing cell, a retried cell, a job killed mid-write) corrupts or
  deletes a finished cell's results;
* concurrent training jobs of the real workflow never share a (fake) GPU;
* Ctrl-C landing right after a cell wrote its results (a file handshake, not timing) never
  costs that cell; two runs at once; a damaged data directory; invalid result files retrained.

The rest of the fault suite, on result files and subsets without Snakemake: test_bad_results.py.

Training is replaced by a fast fake (`python -m emogrid train` is intercepted by a `python`
shim on PATH) that honours the train contract's outputs and records each call, so these tests
take seconds; data preparation is the real `emogrid prepare` on the local GoEmotions copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, require_data

FAKE_TRAIN = textwrap.dedent(
    r"""
    import argparse, json, os, signal, sys, time
    from pathlib import Path
    from emogrid.atomic import write_json, write_jsonl

    p = argparse.ArgumentParser()
    for a in ("--spec", "--data", "--out", "--attempt", "--fetched", "--processes"):
        p.add_argument(a)
    args = p.parse_args()
    spec = json.loads(args.spec)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = spec["cell"]["model"]
    start = time.time()
    with open(out / "run.log", "a") as fh:   # like emogrid train: run.log is appended to
        fh.write(f"attempt {args.attempt} pid {os.getpid()}\n")
    with open(os.environ["FAKE_CALLS"], "a") as fh:
        fh.write(json.dumps({"cell": spec["cell_id"], "attempt": int(args.attempt), "pid": os.getpid(),
                             "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start}) + "\n")
    time.sleep(float(os.environ.get("FAKE_SECONDS", "1")))
    if model in os.environ.get("FAKE_CRASH", "").split(","):
        # killed mid-write: half a metrics file in a temp name, then SIGKILL (no cleanup at all)
        (out / ".metrics.json.crash.tmp").write_text('{"status": "ok", "val": {"accur')
        os.kill(os.getpid(), signal.SIGKILL)
    if model in os.environ.get("FAKE_FAIL", "").split(","):
        write_json(out / "failure.json", {"cell_id": spec["cell_id"], "status": "failed",
                                           "error": {"type": "RuntimeError", "message": "fake"}})
        sys.exit(1)
    end = time.time()
    # like emogrid train: from the moment results are written, a signal no longer stops the job
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    k = spec["cell"]["labels"]
    names = [f"label{i}" for i in range(k)]
    split = {"accuracy": 0.5, "precision_macro": 0.5, "recall_macro": 0.5, "f1_macro": 0.5,
             "precision_weighted": 0.5, "recall_weighted": 0.5, "f1_weighted": 0.5, "n": 2 * k,
             "labels": names, "per_class": {n: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
                                            for n in names}}
    efficiency = {"trainable_params": 1, "total_params": 2, "trainable_percent": 50.0, "train_seconds": 1.0,
                  "eval_seconds": 0.1, "peak_memory_mb": 1.0, "peak_memory_kind": "rss",
                  "train_samples_per_second": 1.0, "train_tokens_per_second": 1.0, "epochs_run": 1,
                  "best_step": 1, "optimizer_steps": 1, "batch_size": 4, "grad_accum": 1}
    write_jsonl(out / "train_log.jsonl", [{"step": 1, "epoch": 1.0, "loss": 0.5}])
    write_jsonl(out / "predictions.jsonl", [{"id": "x", "split": "test", "gold": [0], "pred": [0]}])
    write_json(out / "metrics.json", {"cell": spec["cell"], "cell_id": spec["cell_id"], "status": "ok",
                                      "val": split, "test": split, "efficiency": efficiency,
                                      "provenance": {"versions": {}, "device": "cpu",
                                                     "config_hash": spec["config_hash"]},
                                      "fake": {"pid": os.getpid(), "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                               "start": start, "end": end}})
    handshake = os.environ.get("FAKE_HANDSHAKE")
    if handshake and model in os.environ.get("FAKE_HOLD", "").split(","):
        # results in place: tell the test, then wait until it says go (it interrupts snakemake
        # in between: the Ctrl-C lands exactly in the window after metrics.json is written)
        Path(handshake, spec["cell_id"].replace("/", "_") + ".written").touch()
        while not Path(handshake, "go").exists():
            time.sleep(0.02)
    (out / "failure.json").unlink(missing_ok=True)
    """
)

PYTHON_SHIM = textwrap.dedent(
    """\
    #!/bin/sh
    # intercept `python -m emogrid train ...`; everything else is the real interpreter
    if [ "$1" = "-m" ] && [ "$2" = "emogrid" ] && [ "$3" = "train" ]; then
        shift 3
        exec "{python}" "{fake}" "$@"
    fi
    exec "{python}" "$@"
    """
)

MODELS = ("ma", "mb", "mc")
RESULTS = "results/goemotions-qlora"  # the study's folder: config.yaml's study.name (the study file sets none)
SEEDS = (0, 1)


def study_yaml(data: Path, models_dir: Path) -> str:
    # local model folders (a config.json is all the config check and the fake need): no fetch job
    for m in MODELS:
        (models_dir / m).mkdir(parents=True, exist_ok=True)
        (models_dir / m / "config.json").write_text(json.dumps({"model_type": "bert"}))
    models = "\n".join(f"  {m}: {{path: {models_dir / m}}}" for m in MODELS)
    return (
        textwrap.dedent(
            f"""\
        data: {{path: {data}}}
        grid: {{labels: [2], samples: [40], models: [{", ".join(MODELS)}], methods: [lora],
                seeds: [{", ".join(map(str, SEEDS))}]}}
        # threads per job: 2 fake GPUs, 2 jobs at once; memory given, so no planning of fake models
        resources: {{train: {{cpus_per_task: 1, mem_mb: 1000}}}}
        """
        )
        + "models:\n"
        + models
        + "\n"
    )


def _default_sigint() -> None:
    """A suite started in the background (`cmd &` from a script) inherits SIGINT ignored, and so
    would snakemake and its jobs; the test's Ctrl-C must reach them as a terminal's would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Study:
    def __init__(self, tmp: Path):
        self.dir = tmp / "study"
        self.dir.mkdir()
        bindir = tmp / "bin"
        bindir.mkdir()
        fake = tmp / "fake_train.py"
        fake.write_text(FAKE_TRAIN)
        shim = bindir / "python"
        shim.write_text(PYTHON_SHIM.format(python=sys.executable, fake=fake))
        shim.chmod(0o755)
        self.calls_file = tmp / "calls.jsonl"
        self.config = tmp / "study.yaml"
        self.config.write_text(study_yaml(require_data(), tmp / "models"))
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SLURM_", "EMOGRID_GPU", "FAKE_")) and k != "CUDA_VISIBLE_DEVICES"}
        self.env.update(PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}", FAKE_CALLS=str(self.calls_file),
                        EMOGRID_GPU_LOCK_DIR=str(tmp / "gpu-locks"), PYTHONPATH=str(REPO / "src"))

    def cmd(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(self.dir),
                "--configfile", str(REPO / "config.yaml"), str(self.config),
                "--profile", str(REPO / "profiles" / "workstation"),
                "--until", "train", "--cores", "4", *extra, "--resources", "gpu=2"]

    def run(self, *extra: str, timeout: int = 240, **env) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.cmd(*extra), cwd=self.dir, env={**self.env, **env},
                              capture_output=True, text=True, timeout=timeout)
        with open(self.dir.parent / "snakemake.log", "a") as fh:
            fh.write(proc.stdout + proc.stderr)
        return proc

    def start(self, **env) -> subprocess.Popen:
        log = open(self.dir.parent / "snakemake.log", "a")
        proc = subprocess.Popen(self.cmd(), cwd=self.dir, env={**self.env, **env}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_default_sigint)
        _STARTED.append(proc)
        return proc

    def metrics(self) -> list[Path]:
        return sorted((self.dir / RESULTS / "runs").glob("**/metrics.json"))

    def snapshot(self) -> dict[str, tuple[str, int]]:
        """Every finished cell's files: sha256 and mtime (any rewrite changes the mtime)."""
        snap = {}
        for metrics in self.metrics():
            for f in ("metrics.json", "predictions.jsonl", "train_log.jsonl"):
                path = metrics.parent / f
                snap[str(path.relative_to(self.dir))] = (hashlib.sha256(path.read_bytes()).hexdigest(),
                                                         path.stat().st_mtime_ns)
        return snap

    def calls(self) -> list[dict]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines() if line.strip()]

    def trainings(self) -> dict[str, int]:
        """How often each cell was trained (the fake trainer's calls)."""
        runs: dict[str, int] = {}
        for call in self.calls():
            runs[call["cell"]] = runs.get(call["cell"], 0) + 1
        return runs

    def wait_for_cells(self, proc: subprocess.Popen, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while len(self.metrics()) < count:
            assert proc.poll() is None, "snakemake ended before the interruption"
            assert time.monotonic() < deadline, "cells did not finish in time"
            time.sleep(0.1)


N_CELLS = len(MODELS) * len(SEEDS)


def assert_untouched(before: dict, after: dict, *, mtime: bool = True) -> None:
    """Same content (and, by default, the same mtime) for every file of `before`."""
    for path, (digest, stamp) in before.items():
        assert path in after, f"{path} was deleted"
        if mtime:
            assert after[path] == (digest, stamp), f"{path} was rewritten"
        else:
            assert after[path][0] == digest, f"{path} was rewritten"


def test_interrupted_run_resumes_without_redoing_finished_cells(tmp_path):
    study = Study(tmp_path)
    proc = study.start(FAKE_SECONDS="1.5")
    study.wait_for_cells(proc, 2)
    os.killpg(proc.pid, signal.SIGINT)          # Ctrl-C in the terminal: snakemake and its jobs
    try:
        proc.wait(timeout=0.5)
    except subprocess.TimeoutExpired:
        # Snakemake now and then swallows a Ctrl-C that lands while it is spawning jobs and runs
        # on to the end (about 1 run in 8 here); a user presses it again, and so does this test.
        os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    before = study.snapshot()
    finished = {json.loads((study.dir / p).read_text())["cell_id"] for p in before if p.endswith("metrics.json")}
    assert 2 <= len(finished) < N_CELLS, "interrupt came too late to test anything"

    rerun = study.run(FAKE_SECONDS="0.2")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert len(study.metrics()) == N_CELLS
    assert_untouched(before, study.snapshot())
    runs = study.trainings()
    for cell in finished:
        assert runs[cell] == 1, f"finished cell {cell} was trained again"
    assert set(runs) == {json.loads(p.read_text())["cell_id"] for p in study.metrics()}


def test_hard_killed_run_resumes_after_unlock(tmp_path):
    study = Study(tmp_path)
    proc = study.start(FAKE_SECONDS="1.5")
    study.wait_for_cells(proc, 2)
    os.killpg(proc.pid, signal.SIGKILL)          # the machine's session dies: no cleanup at all
    killed_at = time.time()
    proc.wait(timeout=30)
    time.sleep(0.5)
    before = study.snapshot()

    locked = study.run(FAKE_SECONDS="0.2")
    if locked.returncode != 0:                   # stale lock after SIGKILL: the documented recipe
        assert "unlock" in (locked.stdout + locked.stderr).lower()
        unlock = study.run("--unlock")
        assert unlock.returncode == 0, unlock.stderr[-2000:]
        again = study.run(FAKE_SECONDS="0.2")
        assert again.returncode == 0, again.stderr[-3000:]
    assert len(study.metrics()) == N_CELLS
    # a cell whose job finished a split second before the kill may be marked incomplete and be
    # redone; every other finished cell must be untouched
    after = study.snapshot()
    for path, (_digest, mtime) in before.items():
        if after.get(path) != before[path]:
            assert mtime / 1e9 > killed_at - 1.0, f"{path}, finished well before the kill, was redone"


def test_failures_never_touch_finished_cells(tmp_path):
    study = Study(tmp_path)
    # ma cells fail (exit 1), mb cells are SIGKILLed mid-write, mc cells succeed
    first = study.run(FAKE_SECONDS="0.2", FAKE_FAIL="ma", FAKE_CRASH="mb")
    assert first.returncode != 0
    done = study.metrics()
    assert len(done) == len(SEEDS) and all("/mc/" in str(p) for p in done), done
    before = study.snapshot()
    # keep-going ran every cell; retries (1 in the profile) ran each failing cell twice
    attempts = {}
    for call in study.calls():
        attempts.setdefault(call["cell"], []).append(call["attempt"])
    for cell, tries in attempts.items():
        assert sorted(tries) == ([1] if "/mc/" in cell else [1, 2]), (cell, tries)
    for cell in (p for p in (study.dir / RESULTS / "runs").glob("**/ma/**/failure.json")):
        assert json.loads(cell.read_text())["status"] == "failed"
        # Snakemake empties a rule's log: before each attempt; run.log is not one, so it keeps both
        assert [line.split()[1] for line in (cell.parent / "run.log").read_text().splitlines()] == ["1", "2"]

    # the same failures again, then a clean run: the finished cells never change
    again = study.run(FAKE_SECONDS="0.2", FAKE_FAIL="ma", FAKE_CRASH="mb")
    assert again.returncode != 0
    assert_untouched(before, study.snapshot())
    final = study.run(FAKE_SECONDS="0.2")
    assert final.returncode == 0, final.stderr[-3000:]
    assert len(study.metrics()) == N_CELLS
    assert_untouched(before, study.snapshot())
    for metrics in study.metrics():
        json.loads(metrics.read_text())  # whole files, never the crashed half-write
    assert not list((study.dir / RESULTS / "runs").glob("**/mc/**/failure.json"))


def test_workflow_jobs_never_share_a_gpu(tmp_path):
    study = Study(tmp_path)
    proc = study.run(FAKE_SECONDS="1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(p.read_text())["fake"] for p in study.metrics()]
    assert {r["gpu"] for r in records} == {"0", "1"}
    for gpu in ("0", "1"):
        spans = sorted((r["start"], r["end"]) for r in records if r["gpu"] == gpu)
        for (_s1, e1), (s2, _e2) in zip(spans, spans[1:]):
            assert s2 >= e1, f"GPU {gpu} shared by two cells"


def test_workflow_packs_cells_per_gpu(tmp_path):
    """resources.train.cells_per_gpu: 2 through the real rule: 6 cells on 2 fake GPUs run 4 at once,
    two per GPU, never three (Snakemake's gpu=2 still counts devices; gpu-slot packs)."""
    study = Study(tmp_path)
    text = study.config.read_text()
    assert "resources: {train: {cpus_per_task: 1, mem_mb: 1000}}" in text
    study.config.write_text(text.replace("resources: {train: {cpus_per_task: 1, mem_mb: 1000}}",
                                         "resources: {train: {cpus_per_task: 1, mem_mb: 1000, cells_per_gpu: 2}}"))
    proc = study.run(FAKE_SECONDS="2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(p.read_text())["fake"] for p in study.metrics()]
    assert len(records) == N_CELLS and {r["gpu"] for r in records} == {"0", "1"}
    for gpu in ("0", "1"):
        mine = [r for r in records if r["gpu"] == gpu]
        assert max(sum(1 for o in mine if o["start"] <= r["start"] < o["end"]) for r in mine) <= 2
    assert max(sum(1 for o in records if o["start"] <= r["start"] < o["end"]) for r in records) >= 3


_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test():
    """A failed assertion must not leave a Snakemake (and its held fake cells) running: kill the
    process group of every run a test started and did not see end."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)


def _wait(what, proc: subprocess.Popen, timeout: float = 120, on_slow=None) -> None:
    deadline = time.monotonic() + timeout
    nudged = time.monotonic() + 5
    while not what():
        assert time.monotonic() < deadline, "timed out"
        if on_slow is not None and time.monotonic() > nudged:
            on_slow()
            nudged = time.monotonic() + 5
        time.sleep(0.05)


def test_ctrl_c_after_a_cell_wrote_its_results_never_retrains_it(tmp_path):
    """The race of a finished cell and Ctrl-C, made deterministic by a file handshake: the `ma`
    cells write metrics.json and hold; the test presses Ctrl-C, waits until Snakemake has taken
    it, then lets the jobs exit. Snakemake never post-processes them (their outputs stay marked
    incomplete); the rerun must keep them, not train them again."""
    from emogrid.training.cell_files import _mark_path

    study = Study(tmp_path)
    hand = tmp_path / "handshake"
    hand.mkdir()
    proc = study.start(FAKE_SECONDS="0.2", FAKE_HANDSHAKE=str(hand), FAKE_HOLD="ma")
    _wait(lambda: len(list(hand.glob("*.written"))) == len(SEEDS) or proc.poll() is not None, proc)
    assert proc.poll() is None, "snakemake ended before the interruption"
    held = sorted(f"goemotions/ma/lora/k2_n40/s{s}" for s in SEEDS)
    log = study.dir.parent / "snakemake.log"
    os.killpg(proc.pid, signal.SIGINT)
    # Snakemake rarely swallows a Ctrl-C that lands while it spawns jobs: press it again then
    _wait(lambda: "Terminating processes on user request" in log.read_text(), proc,
          on_slow=lambda: os.killpg(proc.pid, signal.SIGINT))
    (hand / "go").touch()
    proc.wait(timeout=60)
    for cell in held:
        metrics = study.dir / RESULTS / "runs" / cell / "metrics.json"
        assert metrics.is_file(), f"{cell}: results lost to the interrupt"
        # the situation under test: Snakemake left the finished outputs marked incomplete
        assert _mark_path(study.dir / ".snakemake" / "incomplete", f"{RESULTS}/runs/{cell}/metrics.json").is_file()
    before = study.snapshot()

    rerun = study.run(FAKE_SECONDS="0.2")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert len(study.metrics()) == N_CELLS
    assert_untouched(before, study.snapshot())
    runs = study.trainings()
    for cell in held:
        assert runs[cell] == 1, f"finished cell {cell} was trained again"
        assert f"{cell}: finished (valid metrics.json) but marked incomplete" in rerun.stderr


def test_two_runs_at_once_the_second_is_refused_and_the_first_finishes(tmp_path):
    """A second `snakemake` on the same study while the first runs: refused with the lock
    message, nothing touched; the first finishes every cell exactly once."""
    study = Study(tmp_path)
    hand = tmp_path / "handshake"
    hand.mkdir()
    first = study.start(FAKE_SECONDS="0.2", FAKE_HANDSHAKE=str(hand), FAKE_HOLD="ma")
    _wait(lambda: list(hand.glob("*.written")) or first.poll() is not None, first)
    assert first.poll() is None, "the first run ended too early"
    before = study.snapshot()
    second = study.run(FAKE_SECONDS="0.2")
    assert second.returncode != 0
    assert "lock" in (second.stdout + second.stderr).lower()
    # Content only: the first run goes on finishing cells, and Snakemake may still touch the
    # outputs of a job that wrote them just before `before` (seen +18 ms under load); that no
    # cell trained twice is checked from the calls below.
    assert_untouched(before, study.snapshot(), mtime=False)
    (hand / "go").touch()
    assert first.wait(timeout=120) == 0
    assert len(study.metrics()) == N_CELLS
    runs = study.trainings()
    assert set(runs.values()) == {1} and len(runs) == N_CELLS


def test_corrupt_data_directory_stops_at_the_data_step_naming_file_and_line(tmp_path):
    """A damaged GoEmotions copy: the data job fails with the file, the line and what was
    expected; no training job starts, and the finished cells of an earlier run stay."""
    import shutil

    study = Study(tmp_path)
    first = study.run(FAKE_SECONDS="0.1")
    assert first.returncode == 0, first.stderr[-3000:]
    before = study.snapshot()
    calls = len(study.calls())

    bad = tmp_path / "bad-data" / "original"
    shutil.copytree(require_data() / "original", bad)
    for f in bad.iterdir():
        f.chmod(0o644)
    lines = (bad / "train.tsv").read_text(encoding="utf-8").splitlines()
    lines[41] = "this row has no label column"
    (bad / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    study.config.write_text(study.config.read_text().replace("samples: [40]", "samples: [60]"))
    proc = study.run(FAKE_SECONDS="0.1", EMOGRID_DATA_DIR=str(bad.parent))  # the env wins over data.path
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "train.tsv" in out and ":42" in out, out[-3000:]
    assert len(study.calls()) == calls            # nothing trained on it
    assert_untouched(before, study.snapshot())


def test_invalid_results_are_retrained_by_the_next_run(tmp_path):
    """A truncated metrics.json and one copied from another cell: the next run names each file
    and why, moves it aside (kept as metrics.json.invalid) and trains exactly those cells again."""
    study = Study(tmp_path)
    first = study.run(FAKE_SECONDS="0.1")
    assert first.returncode == 0, first.stderr[-3000:]
    runs = study.dir / RESULTS / "runs"
    truncated = runs / "goemotions/ma/lora/k2_n40/s0/metrics.json"
    copied = runs / "goemotions/mb/lora/k2_n40/s0/metrics.json"
    text = truncated.read_text()
    truncated.write_text(text[: len(text) // 2])
    copied.write_text((runs / "goemotions/mc/lora/k2_n40/s1/metrics.json").read_text())
    before = {p: v for p, v in study.snapshot().items() if "/ma/" not in p and "/mb/" not in p or "/s1/" in p}

    rerun = study.run(FAKE_SECONDS="0.1")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{truncated.relative_to(study.dir)}: not valid JSON" in rerun.stderr
    assert "records cell 'goemotions/mc/lora/k2_n40/s1' but lives in the folder of" in rerun.stderr
    assert (truncated.parent / "metrics.json.invalid").read_text() == text[: len(text) // 2]
    for path in (truncated, copied):
        assert json.loads(path.read_text())["cell_id"] == str(path.parent.relative_to(runs))
    runs_per_cell = {}
    for call in study.calls():
        runs_per_cell[call["cell"]] = runs_per_cell.get(call["cell"], 0) + 1
    assert runs_per_cell.pop("goemotions/ma/lora/k2_n40/s0") == 2
    assert runs_per_cell.pop("goemotions/mb/lora/k2_n40/s0") == 2
    assert set(runs_per_cell.values()) == {1}
    assert_untouched(before, study.snapshot())
