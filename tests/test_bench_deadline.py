"""bench/run.py's --deadline: no repeat may start that would end after it, on a loaded machine too."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class _Clock:
    """A stand-in for the `time` module inside bench/run.py: runs advance it, nothing sleeps."""

    def __init__(self, now: float):
        self.now = now

    def time(self) -> float:
        return self.now

    def strftime(self, fmt, *args):
        return time.strftime(fmt, time.gmtime(self.now))


def _bench(monkeypatch, clock: _Clock, seconds_per_run: dict):
    spec = importlib.util.spec_from_file_location("bench_run_deadline", REPO / "bench" / "run.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "time", clock)

    def run_one(side, spec_path, data_dir, run_dir, log_path):
        clock.now += seconds_per_run[log_path.parent.name]
        return {"side": side, "wall_s": 1.0, "test_accuracy": 0.5, "peak_rss_mb": 1.0, "optimizer_steps": 225}

    monkeypatch.setattr(bench, "run_one", run_one)
    return bench


def test_a_slow_first_case_keeps_the_next_case_from_starting_a_repeat_past_the_deadline(tmp_path, monkeypatch):
    """Measured 2026-12-07 on a loaded machine: a MiniLM LoRA pair took 32 min (quiet: 7). With 15
    minutes left, the full fine-tuning case (quiet guess 9.3 min) must not start a 35-minute pair;
    it used to, because its deadline check assumed a quiet machine."""
    clock = _Clock(1_000_000.0)
    bench = _bench(monkeypatch, clock, {"minilm-lora": 16 * 60, "minilm-full": 17 * 60})
    bench.DEADLINE = clock.now + 47 * 60
    spec = {"train": {"epochs": 5}}
    (tmp_path / "specs").mkdir()
    lora = bench.run_case("minilm-lora", tmp_path, spec, tmp_path, 3, "lora")
    assert len(lora["repeats"]) == 1 and lora["stopped_early"] == "1 of 3 repeats (deadline)"
    full = bench.run_case("minilm-full", tmp_path, spec, tmp_path, 3, "full")
    assert full["repeats"] == [] and full["stopped_early"] == "0 of 3 repeats (deadline)"
    assert clock.now <= bench.DEADLINE


def test_a_quiet_machine_still_runs_every_repeat_that_fits(tmp_path, monkeypatch):
    clock = _Clock(1_000_000.0)
    bench = _bench(monkeypatch, clock, {"minilm-lora": 200, "minilm-full": 260})
    bench.DEADLINE = clock.now + 60 * 60
    spec = {"train": {"epochs": 5}}
    (tmp_path / "specs").mkdir()
    assert len(bench.run_case("minilm-lora", tmp_path, spec, tmp_path, 3, "lora")["repeats"]) == 3
    full = bench.run_case("minilm-full", tmp_path, spec, tmp_path, 3, "full")
    assert len(full["repeats"]) == 3 and "stopped_early" not in full
