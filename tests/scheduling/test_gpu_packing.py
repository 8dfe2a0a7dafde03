"""Memory-aware packing in `emogrid gpu-slot` on fake GPUs (EMOGRID_GPUS + EMOGRID_GPU_MEM_MB).

Jobs that fit share a GPU, a job that does not waits, a killed job frees its share, whole-GPU
jobs and packed jobs never mix on one device, and two Snakemake runs on one machine together
never put more planned memory on a GPU than it has."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_gpu_slots import CHILD, clean_env, slot_cmd, wait_for

from emogrid.errors import EmogridError
from emogrid.scheduling import gpu_ledger


@pytest.fixture
def child(tmp_path):
    path = tmp_path / "child.py"
    path.write_text(CHILD)
    return path


def packed_env(gpus=2, mem="10000", mode="auto", **extra):
    return clean_env(EMOGRID_GPUS=str(gpus), EMOGRID_GPU_MEM_MB=mem, EMOGRID_CELLS_PER_GPU=mode, **extra)


def job(locks, child, out, hold, mem_mb=None, env=None, *extra):
    args = ["--mem-mb", str(mem_mb)] if mem_mb is not None else []
    return subprocess.Popen(slot_cmd(locks, *args, *extra, "--", sys.executable, str(child), str(out), str(hold)),
                            env=env, stderr=subprocess.PIPE, text=True)


def records(paths):
    return [json.loads(Path(p).read_text()) for p in paths]


def overlap(a, b) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def test_jobs_that_fit_share_a_gpu(tmp_path, child):
    """4 jobs of 4000 MiB on 2 GPUs of 10000: two per GPU, all four at once."""
    locks, env = tmp_path / "locks", packed_env()
    outs = [tmp_path / f"j{i}.json" for i in range(4)]
    procs = [job(locks, child, out, 2.0, 4000, env) for out in outs]
    for p in procs:
        assert p.wait(timeout=60) == 0, p.stderr.read()
    recs = records(outs)
    assert sorted(r["cvd"] for r in recs) == ["0", "0", "1", "1"]
    assert all(overlap(a, b) for a in recs for b in recs if a is not b)  # nobody waited
    assert not list(locks.glob("*.share.*")) or all(  # leftovers are only dead (unlocked) shares
        gpu_ledger.used_fraction(locks, k, clean=False) == 0 for k in ("0", "1"))


def test_a_job_that_does_not_fit_waits(tmp_path, child):
    locks, env = tmp_path / "locks", packed_env(gpus=1)
    first = job(locks, child, tmp_path / "a.json", 1.5, 7000, env)
    wait_for(tmp_path / "a.json.started")
    second = job(locks, child, tmp_path / "b.json", 0, 5000, env)
    small = job(locks, child, tmp_path / "c.json", 0, 1800, env)  # fits beside the first (8976 usable)
    for p in (first, second, small):
        assert p.wait(timeout=60) == 0
    a, b, c = records([tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"])
    assert b["start"] >= a["end"]  # 7000 + 5000 > 10000: waited for the first
    assert c["start"] < a["end"]   # 7000 + 1800 fits: ran alongside


def test_a_killed_job_frees_its_share(tmp_path, child):
    locks, env = tmp_path / "locks", packed_env(gpus=1)
    victim = job(locks, child, tmp_path / "v.json", 600, 8000, env)
    wait_for(tmp_path / "v.json.started")
    assert gpu_ledger.used_fraction(locks, "0", clean=False) == pytest.approx(0.8)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    t0 = time.time()
    nxt = job(locks, child, tmp_path / "n.json", 0, 8000, env)
    assert nxt.wait(timeout=30) == 0
    assert json.loads((tmp_path / "n.json").read_text())["start"] - t0 < 10
    assert gpu_ledger.used_fraction(locks, "0") == 0 and not list(locks.glob("gpu-0.share.*"))


def test_fixed_cells_per_gpu(tmp_path, child):
    locks, env = tmp_path / "locks", packed_env(gpus=1, mode="2", mem="")
    outs = [tmp_path / f"j{i}.json" for i in range(3)]
    procs = []
    for out in outs:
        procs.append(job(locks, child, out, 1.5, None, env))
        time.sleep(0.3)
    for p in procs:
        assert p.wait(timeout=60) == 0
    a, b, c = records(outs)
    assert overlap(a, b) and c["start"] >= min(a["end"], b["end"])


def test_whole_gpu_jobs_and_packed_jobs_never_mix(tmp_path, child):
    locks = tmp_path / "locks"
    packed = job(locks, child, tmp_path / "p.json", 1.5, 1000, packed_env(gpus=1))
    wait_for(tmp_path / "p.json.started")
    whole = job(locks, child, tmp_path / "w.json", 1.0, None, packed_env(gpus=1, mode="1"))
    wait_for(tmp_path / "w.json.started", timeout=30)
    late = job(locks, child, tmp_path / "l.json", 0, 1000, packed_env(gpus=1))
    for p in (packed, whole, late):
        assert p.wait(timeout=60) == 0
    p, w, lt = records([tmp_path / "p.json", tmp_path / "w.json", tmp_path / "l.json"])
    assert w["start"] >= p["end"] and lt["start"] >= w["end"]


def test_a_job_larger_than_any_gpu_is_a_clear_error(tmp_path, child):
    proc = job(tmp_path / "locks", child, tmp_path / "x.json", 0, 20000, packed_env(gpus=2, mem="10000,16000"))
    assert proc.wait(timeout=30) == 2
    err = proc.stderr.read()
    assert "20000 MiB" in err and "16000 MiB" in err and "qlora" in err


def test_heterogeneous_gpus_get_what_fits(tmp_path, child):
    """12000 MiB fits only the 16000 MiB GPU (pool position 1)."""
    proc = job(tmp_path / "locks", child, tmp_path / "x.json", 0, 12000, packed_env(gpus=2, mem="10000,16000"))
    assert proc.wait(timeout=30) == 0
    assert json.loads((tmp_path / "x.json").read_text())["cvd"] == "1"


def test_mode_and_memory_declarations_are_checked():
    assert gpu_ledger.parse_mode("auto") == "auto" and gpu_ledger.parse_mode("3") == 3
    assert gpu_ledger.parse_mode(None) == 1
    for bad in ("0", "many", -1):
        with pytest.raises(EmogridError, match="auto"):
            gpu_ledger.parse_mode(bad)
    assert gpu_ledger.gpu_memory_mb(["0", "1"], {"EMOGRID_GPU_MEM_MB": "80000"}) == {"0": 80000, "1": 80000}
    with pytest.raises(EmogridError, match="one per GPU"):
        gpu_ledger.gpu_memory_mb(["0", "1"], {"EMOGRID_GPU_MEM_MB": "1,2,3"})


SNAKEFILE = """
rule all:
    input: expand("out/{{name}}.json", name=[f"{{run}}{{i}}" for i in range(4)])

rule cell:
    output: "out/{{name}}.json"
    shell: "{python} -m emogrid.cli gpu-slot --lock-dir {locks} --mem-mb 4000 -- {python} {child} {{output}} 1.0"
"""


@pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake not on PATH")
def test_two_snakemake_runs_do_not_over_commit(tmp_path, child):
    """Two Snakemake processes, 4 cells each, 4000 MiB per cell, 2 fake GPUs of 10000 MiB: at no
    moment does a GPU carry more than two cells (8000 MiB)."""
    locks = tmp_path / "locks"
    procs = []
    for run in ("a", "b"):
        work = tmp_path / run
        work.mkdir()
        (work / "Snakefile").write_text(SNAKEFILE.format(python=sys.executable, locks=locks, child=child)
                                        .replace("{run}", run))
        env = packed_env(PYTHONPATH=os.pathsep.join(sys.path))
        procs.append(subprocess.Popen(["snakemake", "--cores", "4", "--quiet", "all"], cwd=work, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for p in procs:
        out, _ = p.communicate(timeout=180)
        assert p.returncode == 0, out
    recs = records(sorted(tmp_path.glob("?/out/*.json")))
    assert len(recs) == 8
    for gpu in ("0", "1"):
        mine = [r for r in recs if r["cvd"] == gpu]
        for r in mine:  # cells running on this GPU when r started (r included)
            assert sum(1 for o in mine if o["start"] <= r["start"] < o["end"]) <= 2
    assert max(sum(1 for o in recs if o["start"] <= r["start"] < o["end"]) for r in recs) >= 3  # packed


def test_a_waiting_whole_gpu_job_is_not_starved_by_small_cells(tmp_path, child):
    """A whole-GPU job waiting for a GPU that packed cells use reserves it: cells that arrive
    later wait for the whole-GPU job instead of keeping the GPU busy forever."""
    locks = tmp_path / "locks"
    first = job(locks, child, tmp_path / "p.json", 1.5, 1000, packed_env(gpus=1))
    wait_for(tmp_path / "p.json.started")
    whole = job(locks, child, tmp_path / "w.json", 1.0, None, packed_env(gpus=1, mode="1"))
    time.sleep(0.8)  # the whole-GPU job is waiting now
    assert list(locks.glob("gpu-0.want.*"))
    late = job(locks, child, tmp_path / "l.json", 0, 1000, packed_env(gpus=1))
    for p in (first, whole, late):
        assert p.wait(timeout=60) == 0
    p, w, lt = records([tmp_path / "p.json", tmp_path / "w.json", tmp_path / "l.json"])
    assert w["start"] >= p["end"] and lt["start"] >= w["end"]
    assert gpu_ledger.live_wants(locks, "0") == 0 and not list(locks.glob("gpu-0.want.*"))


def test_a_dead_share_we_may_not_delete_is_still_ignored(tmp_path, monkeypatch):
    """Another user's dead share in sticky /tmp cannot be unlinked (EPERM): it counts as dead."""
    dead = tmp_path / "gpu-0.share.999.0"
    dead.write_text(json.dumps({"fraction": 0.9}))
    real_unlink = Path.unlink

    def eperm(self, missing_ok=False):
        if self == dead:
            raise PermissionError(1, "Operation not permitted", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", eperm)
    assert gpu_ledger.used_fraction(tmp_path, "0") == 0 and dead.exists()


# A packed job that records what gpu-slot told it and, once told to go on (file handshake),
# the share record its train process reads at the end (emogrid.training.efficiency.gpu_share).
SHARE_CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    out, go = sys.argv[sys.argv.index("--out") + 1], sys.argv[1]
    open(out + ".started", "w").close()
    while not os.path.exists(go):
        time.sleep(0.05)
    from emogrid.training.efficiency import gpu_share
    keys = ("CUDA_VISIBLE_DEVICES", "EMOGRID_GPU_MEM_FRACTION", "EMOGRID_GPU_SHARE_FILE", "PYTORCH_CUDA_ALLOC_CONF")
    with open(out, "w") as fh:
        json.dump({"env": {k: os.environ.get(k) for k in keys}, "share": gpu_share()}, fh)
    """
)


def _share_job(locks, child, go, out, mem_mb, env):
    return subprocess.Popen(slot_cmd(locks, "--mem-mb", str(mem_mb), "--", sys.executable, str(child), str(go),
                                     "--out", str(out)), env=env, stderr=subprocess.PIPE, text=True)


def test_a_packed_job_is_capped_at_its_share_and_names_its_co_tenants(tmp_path):
    """Two cells packed on one fake 10000 MiB GPU: each gets PYTORCH_CUDA_ALLOC_CONF with
    expandable segments and a PyTorch cap of its planned MiB less the CUDA context (3000 MiB
    planned -> 2500 / 10000 = 0.25), and each one's record names the other, including the one
    placed after it -- what metrics.json reports as its co-tenants."""
    from emogrid.models.devices import CUDA_CONTEXT_MB

    child = tmp_path / "share_child.py"
    child.write_text(SHARE_CHILD)
    locks, go = tmp_path / "locks", tmp_path / "go"
    env = packed_env(gpus=1, PYTHONPATH=os.pathsep.join(sys.path))
    env.pop("PYTORCH_CUDA_ALLOC_CONF", None)
    env.pop("PYTORCH_ALLOC_CONF", None)
    a, b = tmp_path / "cell-a.json", tmp_path / "cell-b.json"
    first = _share_job(locks, child, go, a, 3000, env)
    wait_for(Path(f"{a}.started"))
    second = _share_job(locks, child, go, b, 4000, env)
    wait_for(Path(f"{b}.started"))
    go.touch()
    for p in (first, second):
        assert p.wait(timeout=60) == 0, p.stderr.read()
    ra, rb = records([a, b])
    for rec, mb in ((ra, 3000), (rb, 4000)):
        assert rec["env"]["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True"
        assert float(rec["env"]["EMOGRID_GPU_MEM_FRACTION"]) == pytest.approx((mb - CUDA_CONTEXT_MB) / 10000, abs=1e-4)
        assert rec["share"]["gpu_share"] == pytest.approx(mb / 10000) and rec["share"]["gpu_share_mb"] == mb
        assert rec["share"]["gpu_co_tenants"] == 1
    assert ra["share"]["co_tenants"] == [str(b)] and rb["share"]["co_tenants"] == [str(a)]


def test_a_users_allocator_setting_is_kept(tmp_path):
    child = tmp_path / "share_child.py"
    child.write_text(SHARE_CHILD)
    (tmp_path / "go").touch()
    env = packed_env(gpus=1, PYTHONPATH=os.pathsep.join(sys.path), PYTORCH_CUDA_ALLOC_CONF="max_split_size_mb:128")
    proc = _share_job(tmp_path / "locks", child, tmp_path / "go", tmp_path / "c.json", 1000, env)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    assert records([tmp_path / "c.json"])[0]["env"]["PYTORCH_CUDA_ALLOC_CONF"] == "max_split_size_mb:128"


def test_packing_leaves_headroom_on_each_gpu(tmp_path, child):
    """Shares fill a 10000 MiB GPU to at most 10000 - max(1024, 5%) = 8976 MiB: two jobs of 4600
    (9200 MiB together, under memory.total) do not run side by side; two of 4400 do."""
    locks, env = tmp_path / "locks", packed_env(gpus=1)
    first = job(locks, child, tmp_path / "a.json", 1.0, 4600, env)
    wait_for(tmp_path / "a.json.started")
    second = job(locks, child, tmp_path / "b.json", 0, 4600, env)
    for p in (first, second):
        assert p.wait(timeout=60) == 0
    a, b = records([tmp_path / "a.json", tmp_path / "b.json"])
    assert b["start"] >= a["end"]
    assert gpu_ledger.usable_mb(10000) == 8976 and gpu_ledger.usable_mb(81559) == pytest.approx(81559 * 0.95)
    third = job(locks, child, tmp_path / "c.json", 1.0, 4400, env)
    wait_for(tmp_path / "c.json.started")
    fourth = job(locks, child, tmp_path / "d.json", 0, 4400, env)
    for p in (third, fourth):
        assert p.wait(timeout=60) == 0
    c, d = records([tmp_path / "c.json", tmp_path / "d.json"])
    assert d["start"] < c["end"]


def test_a_job_over_the_usable_memory_is_a_clear_error_not_a_wait(tmp_path, child):
    """9500 MiB fits a 10000 MiB GPU's memory.total but never its packing room (8976): an error
    at once, not a job that waits forever."""
    proc = job(tmp_path / "locks", child, tmp_path / "x.json", 0, 9500, packed_env(gpus=1))
    assert proc.wait(timeout=30) == 2
    err = proc.stderr.read()
    assert "9500 MiB" in err and "8976" in err and "headroom" in err


def test_memory_cap_per_packing_mode():
    from emogrid.scheduling.gpu_slots import memory_cap

    assert memory_cap("auto", 3000, 10000) == pytest.approx(0.25)
    assert memory_cap("auto", None, 10000) is None  # no plan: a whole GPU, no cap
    assert memory_cap(2, None, 10000) == pytest.approx((8976 / 2 - 500) / 10000)
    assert memory_cap(4, None, None) == pytest.approx(0.95 / 4)  # the GPU's memory unknown


def test_cap_gpu_memory_sets_the_fraction_gpu_slot_handed_out(monkeypatch):
    import torch

    from emogrid.models import devices

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, d=None: calls.append((f, d)))
    assert devices.cap_gpu_memory({}) is None and calls == []  # not packed: the whole GPU
    assert "25.0%" in devices.cap_gpu_memory({"EMOGRID_GPU_MEM_FRACTION": "0.25"})
    assert calls == [(0.25, 0)]
    with pytest.raises(EmogridError, match="EMOGRID_GPU_MEM_FRACTION"):
        devices.cap_gpu_memory({"EMOGRID_GPU_MEM_FRACTION": "1.5"})


def test_train_caps_its_gpu_memory_before_anything_else(tmp_path, monkeypatch):
    """`emogrid train` applies the cap first thing (before the model reaches the GPU)."""
    import argparse

    from emogrid.models import devices
    from emogrid.training import train

    order = []
    monkeypatch.setattr(devices, "cap_gpu_memory", lambda environ=None: order.append("cap"))
    monkeypatch.setattr(train, "load_spec", lambda arg: order.append("spec") or (_ for _ in ()).throw(
        EmogridError("stop here")))
    assert train.run(argparse.Namespace(spec="{}", data=str(tmp_path), out=str(tmp_path / "run"), attempt=1)) == 2
    assert order == ["cap", "spec"]


@pytest.mark.parametrize("name, tflops", [
    ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA H200", 989.0), ("NVIDIA H200 NVL", 835.0), ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA L40S", 362.0), ("NVIDIA L4", 121.0), ("NVIDIA GeForce RTX 4090", None)])
def test_bench_peak_flops_tell_pcie_from_sxm(name, tflops):
    """MFU divides by the card's own dense bf16 peak: an H100 PCIe (756 TFLOP/s) was taken for
    an SXM one (989), understating its MFU by a quarter."""
    from bench.run import peak_bf16_tflops

    assert peak_bf16_tflops(name) == tflops


FAKE_SMI = textwrap.dedent(
    """\
    #!/bin/sh
    if [ "$1" = "-L" ]; then
      echo "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-aaaa-0000)"
      echo "  MIG 3g.40gb     Device  0: (UUID: MIG-bbbb-1111)"
      echo "  MIG 1g.10gb     Device  1: (UUID: MIG-cccc-2222)"
      echo "GPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-dddd-3333)"
    else
      echo "0, GPU-aaaa-0000, 81920"
      echo "1, GPU-dddd-3333, 81920"
    fi
    """
)


def test_mig_instances_are_sized_from_their_profile_not_the_physical_gpu(tmp_path, monkeypatch):
    """A workstation GPU split into MIG instances: each instance is packed by its own memory (from
    its profile), and the physical GPU is refused -- its memory.total (80 GiB) belongs to no job.
    It packed 80 GiB of cells into a 10 GiB instance."""
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{smi.parent}{os.pathsep}{os.environ['PATH']}")
    mem = gpu_ledger.gpu_memory_mb(["MIG-bbbb-1111", "MIG-cccc-2222", "1"], {})
    assert mem == {"MIG-bbbb-1111": 0.95 * 40 * 1024, "MIG-cccc-2222": 0.95 * 10 * 1024, "1": 81920}
    for physical in ("0", "GPU-aaaa-0000"):
        with pytest.raises(EmogridError, match="split into MIG instances") as err:
            gpu_ledger.gpu_memory_mb([physical], {})
        assert "MIG-cccc-2222 1g.10gb" in str(err.value) and "EMOGRID_GPU_IDS" in err.value.hint
