"""bench/device_check/run.sh --cpu: the GPU device check, CI-sized on the CPU, so it cannot rot
before a GPU is lent (bench/device_check/README.md). Every section runs and writes what it measured."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.helpers import REPO, require_data


@pytest.mark.slow
def test_device_check_cpu_dry_run(tmp_path):
    require_data()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMOGRID_GPU", "SLURM_"))}
    env.update(OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(REPO / "bench" / "device_check" / "run.sh"), "--cpu", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=1800)
    result = json.loads((tmp_path / "device_check.json").read_text())
    sections = result["sections"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:] + json.dumps(sections)[-3000:]
    assert result["mode"] == "cpu"
    assert {name: s["status"] for name, s in sections.items()} == {
        "environment": "ok", "accumulation": "ok", "methods": "ok", "packing": "ok", "snakemake": "ok"}
    assert sections["environment"]["versions"]["torch"] and sections["environment"]["device"] == "cpu"

    accum = sections["accumulation"]
    assert accum["equal"] and [r["split"] for r in accum["rows"]] == ["16x1", "8x2", "4x4"] * 2

    methods = {r["method"]: r for r in sections["methods"]["rows"]}
    assert {"full", "lora", "dora", "ia3"} <= set(methods) and set(methods) | set(sections["methods"]["skipped"]) \
        == {"full", "lora", "qlora", "dora", "ia3"}
    for row in methods.values():
        assert row["ok"], row
        assert row["tokens_per_second"] > 0 and row["planned_mb"] > 0 and row["measured_over_plan"] > 0
        assert row["checkpoint_seconds"] is not None and row["mfu_pct"] is None  # no bf16 peak on a CPU
    assert methods["full"]["trainable_params"] > 10 * methods["lora"]["trainable_params"]

    one, auto = sections["packing"]["modes"]
    assert (one["mode"], auto["mode"]) == ("one-at-a-time", "auto")
    for mode in (one, auto):
        assert mode["finished"] == mode["cells"] == 2 and mode["ooms"] == 0 and not mode["failures"]
    assert one["max_at_once"] == 1 and auto["max_at_once"] == 2  # packed by plan on one (fake) GPU

    snake = sections["snakemake"]
    assert snake["rc"] == 0 and snake["cells"] == 2 and snake["devices"] == ["cpu"]
    md = (tmp_path / "device_check.md").read_text()
    assert md.startswith("# Device check — cpu (cpu)") and "## packing: ok" in md
