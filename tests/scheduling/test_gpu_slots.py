"""`emogrid gpu-slot`: concurrent jobs on fake GPUs never share one; a killed job's slot is reused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from emogrid.errors import EmogridError
from emogrid.models import devices
from emogrid.scheduling import gpu_ids, gpu_locks

# The child every test runs: records its CUDA_VISIBLE_DEVICES and a [start, end] interval.
CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    out, hold = sys.argv[1], float(sys.argv[2])
    start = time.time()
    open(out + ".started", "w").close()
    time.sleep(hold)
    rec = {"cvd": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time(),
           "pid": os.getpid()}
    with open(out, "w") as fh:
        json.dump(rec, fh)
    sys.exit(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
    """
)


@pytest.fixture
def child(tmp_path):
    path = tmp_path / "child.py"
    path.write_text(CHILD)
    return path


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "EMOGRID_GPU")) and k != "CUDA_VISIBLE_DEVICES"}
    env.update(extra)
    return env


def slot_cmd(lock_dir, *args) -> list[str]:
    return [sys.executable, "-m", "emogrid.cli", "gpu-slot", "--lock-dir", str(lock_dir), *args]


def wait_for(path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_concurrent_jobs_never_share_a_gpu(tmp_path, child):
    gpus, jobs, hold = 3, 9, 0.6
    locks = tmp_path / "locks"
    procs = []
    for i in range(jobs):
        out = tmp_path / f"job{i}.json"
        procs.append((out, subprocess.Popen(
            slot_cmd(locks, "--gpus", str(gpus), "--", sys.executable, str(child), str(out), str(hold)),
            env=clean_env(), stderr=subprocess.PIPE, text=True)))
    records = []
    for out, proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        records.append(json.loads(out.read_text()))

    by_gpu: dict[str, list] = {}
    for rec in records:
        assert rec["cvd"] in {"0", "1", "2"}, rec
        by_gpu.setdefault(rec["cvd"], []).append((rec["start"], rec["end"]))
    for gpu, intervals in by_gpu.items():
        intervals.sort()
        for (s1, e1), (s2, e2) in zip(intervals, intervals[1:]):
            assert s2 >= e1, f"GPU {gpu} shared: [{s1}, {e1}] overlaps [{s2}, {e2}]"
    assert len(by_gpu) == gpus, f"all {gpus} GPUs should have been used: {sorted(by_gpu)}"
    # and the jobs did run side by side (one per GPU), not one after another
    events = sorted([(r["start"], 1) for r in records] + [(r["end"], -1) for r in records])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert 2 <= peak <= gpus, f"peak concurrency {peak} with {gpus} GPUs"


def test_sigkilled_job_releases_its_slot(tmp_path, child):
    locks = tmp_path / "locks"
    first = tmp_path / "first.json"
    holder = subprocess.Popen(slot_cmd(locks, "--gpus", "1", "--", sys.executable, str(child), str(first), "60"),
                              env=clean_env(), stderr=subprocess.DEVNULL)
    wait_for(Path(str(first) + ".started"))

    second = tmp_path / "second.json"
    waiter = subprocess.Popen(slot_cmd(locks, "--gpus", "1", "--", sys.executable, str(child), str(second), "0"),
                              env=clean_env(), stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    assert waiter.poll() is None and not Path(str(second) + ".started").exists(), \
        "the second job must wait while the only GPU is held"

    # gpu-slot execs the command, so this pid IS the training job: SIGKILL leaves no cleanup
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    killed_at = time.time()
    _, err = waiter.communicate(timeout=20)
    assert waiter.returncode == 0, err
    rec = json.loads(second.read_text())
    assert rec["cvd"] == "0"
    assert rec["start"] - killed_at < 10
    assert not first.exists(), "the killed job never finished"


def test_cpu_machine_runs_without_gpu_and_without_lock(tmp_path, child):
    locks = tmp_path / "locks"
    out = tmp_path / "cpu.json"
    for env in (clean_env(), clean_env(EMOGRID_GPUS="0")):
        args = ["--gpus", "0"] if "EMOGRID_GPUS" not in env else []
        subprocess.run(slot_cmd(locks, *args, "--", sys.executable, str(child), str(out), "0"),
                       env=env, check=True)
        assert json.loads(out.read_text())["cvd"] == ""
    assert not locks.exists() or not any(locks.iterdir())


def test_scheduler_assignment_is_honoured(tmp_path, child):
    locks = tmp_path / "locks"
    out = tmp_path / "slurm.json"
    env = clean_env(SLURM_JOB_ID="42", CUDA_VISIBLE_DEVICES="3")
    subprocess.run(slot_cmd(locks, "--gpus", "4", "--", sys.executable, str(child), str(out), "0"),
                   env=env, check=True)
    assert json.loads(out.read_text())["cvd"] == "3"
    assert not locks.exists() or not any(locks.iterdir())


def test_user_restricted_gpus_are_the_pool(tmp_path, child):
    locks = tmp_path / "locks"
    procs = []
    for i in range(2):
        out = tmp_path / f"r{i}.json"
        procs.append((out, subprocess.Popen(
            slot_cmd(locks, "--", sys.executable, str(child), str(out), "0.5"),
            env=clean_env(CUDA_VISIBLE_DEVICES="5,7"))))
    seen = set()
    for out, proc in procs:
        assert proc.wait(timeout=30) == 0
        seen.add(json.loads(out.read_text())["cvd"])
    assert seen == {"5", "7"}


def test_exit_code_and_signal_propagate(tmp_path, child):
    locks = tmp_path / "locks"
    out = tmp_path / "x.json"
    proc = subprocess.run(slot_cmd(locks, "--gpus", "1", "--", sys.executable, str(child), str(out), "0", "7"),
                          env=clean_env())
    assert proc.returncode == 7
    proc = subprocess.run(slot_cmd(locks, "--gpus", "1", "--", sys.executable, "-c",
                                   "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"),
                          env=clean_env())
    assert proc.returncode == -signal.SIGTERM
    proc = subprocess.run(slot_cmd(locks, "--gpus", "1", "--", str(tmp_path / "missing")), env=clean_env(),
                          stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 127 and "cannot run" in proc.stderr


def test_pool_rules():
    assert gpu_ids.gpu_pool(2, {}) == ["0", "1"]
    assert gpu_ids.gpu_pool(None, {"EMOGRID_GPUS": "3"}) == ["0", "1", "2"]
    assert gpu_ids.gpu_pool(None, {"EMOGRID_GPU_IDS": "2,3"}) == ["2", "3"]
    assert gpu_ids.gpu_pool(1, {"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2"]
    assert gpu_ids.gpu_pool(0, {"CUDA_VISIBLE_DEVICES": "2,3"}) == []
    with pytest.raises(EmogridError):
        gpu_ids.gpu_pool(3, {"CUDA_VISIBLE_DEVICES": "2,3"})
    with pytest.raises(EmogridError):
        gpu_ids.gpu_pool(None, {"EMOGRID_GPU_IDS": "0;rm -rf"})


def test_need_more_than_available_is_a_clear_error(tmp_path):
    proc = subprocess.run(slot_cmd(tmp_path, "--gpus", "1", "--need", "2", "--", "true"),
                          env=clean_env(), stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 2 and "needs 2 GPUs" in proc.stderr


def test_workstation_run_inside_one_allocation_shares_its_gpus(tmp_path, child):
    """snakemake --profile profiles/workstation inside `salloc --gpus=2`: the jobs split the two."""
    locks = tmp_path / "locks"
    env = clean_env(SLURM_JOB_ID="77", CUDA_VISIBLE_DEVICES="4,6", EMOGRID_GPUS="2",
                    EMOGRID_GPUS_SLURM_JOB="77")
    procs = []
    for i in range(2):
        out = tmp_path / f"a{i}.json"
        procs.append((out, subprocess.Popen(slot_cmd(locks, "--", sys.executable, str(child), str(out), "0.5"),
                                            env=env)))
    seen = []
    for out, proc in procs:
        assert proc.wait(timeout=30) == 0
        seen.append(json.loads(out.read_text())["cvd"])
    assert sorted(seen) == ["4", "6"]
    assert (locks / "slurm-77").is_dir()
    # the SLURM executor's own jobs (Snakemake on the login node: no marker) keep SLURM's choice
    out = tmp_path / "b.json"
    subprocess.run(slot_cmd(locks, "--", sys.executable, str(child), str(out), "0"), check=True,
                   env=clean_env(SLURM_JOB_ID="78", CUDA_VISIBLE_DEVICES="0,1", EMOGRID_GPUS="8"))
    assert json.loads(out.read_text())["cvd"] == "0,1"


# ---------------------------------------------------------------- edge cases (issue 15)


def test_empty_cuda_visible_devices_means_no_gpu():
    assert gpu_ids.gpu_pool(None, {"CUDA_VISIBLE_DEVICES": ""}) == []
    assert gpu_ids.gpu_pool(2, {"CUDA_VISIBLE_DEVICES": ""}) == []  # hidden beats a declared count
    assert gpu_ids.gpu_pool(2, {"CUDA_VISIBLE_DEVICES": "", "EMOGRID_GPU_IDS": "1,2"}) == ["1", "2"]


def test_old_style_mig_ids_are_accepted_and_lock_files_stay_flat(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_ids, "nvidia_smi_ids", lambda: {})
    mig = "MIG-GPU-5c89852c-d268-c3f3-1b07-005d5ae1dc3f/7/0"
    assert gpu_ids.parse_ids(mig + ",MIG-GPU-5c89852c-d268-c3f3-1b07-005d5ae1dc3f/8/0", "x") == \
        [mig, "MIG-GPU-5c89852c-d268-c3f3-1b07-005d5ae1dc3f/8/0"]
    fd = gpu_locks.try_lock(tmp_path, mig)
    assert fd is not None and [p.parent for p in tmp_path.iterdir()] == [tmp_path]
    os.close(fd)
    with pytest.raises(EmogridError):
        gpu_ids.parse_ids("MIG-GPU-x/7/0;rm", "x")


def test_index_and_uuid_of_one_gpu_share_a_slot(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_ids, "nvidia_smi_ids", lambda: {"0": "GPU-aaaa", "1": "GPU-bbbb"})
    held = gpu_locks.try_lock(tmp_path, "0")
    assert held is not None
    assert gpu_locks.try_lock(tmp_path, "GPU-aaaa") is None  # same device, same slot: busy
    other = gpu_locks.try_lock(tmp_path, "GPU-bbbb")
    assert other is not None
    os.close(held)
    os.close(other)
    with pytest.raises(EmogridError, match="same device"):
        gpu_ids.parse_ids("0,GPU-aaaa", "CUDA_VISIBLE_DEVICES")


def test_existing_slot_file_is_opened_without_o_creat(tmp_path, monkeypatch):
    """fs.protected_regular: O_CREAT on another user's file in sticky /tmp fails with EACCES."""
    monkeypatch.setattr(gpu_ids, "nvidia_smi_ids", lambda: {})
    (tmp_path / "gpu-0.lock").write_text("someone else's\n")
    real_open = os.open

    def protected_open(path, flags, *mode):
        if flags & os.O_CREAT and os.path.exists(path):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *mode)

    monkeypatch.setattr(gpu_locks.os, "open", protected_open)
    fd = gpu_locks.try_lock(tmp_path, "0")
    assert fd is not None
    os.close(fd)
    fd = gpu_locks.try_lock(tmp_path, "1")  # a new file is still created
    assert fd is not None and (tmp_path / "gpu-1.lock").exists()
    os.close(fd)


def test_a_gpu_that_cannot_be_counted_is_an_error_not_a_cpu_run(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "nvidia_smi_ids", lambda: {})
    assert devices.detect_gpu_count(tmp_path) == 0  # a machine without NVIDIA devices
    (tmp_path / "nvidia0").touch()
    (tmp_path / "nvidia1").touch()
    (tmp_path / "nvidiactl").touch()
    assert devices.detect_gpu_count(tmp_path) == 2
    wsl = tmp_path / "wsl"
    wsl.mkdir()
    (wsl / "dxg").touch()  # WSL2: no /dev/nvidia<k>
    with pytest.raises(EmogridError, match="EMOGRID_GPUS"):
        devices.detect_gpu_count(wsl)
    monkeypatch.setattr(devices, "nvidia_smi_ids", lambda: {"0": "GPU-a"})
    assert devices.detect_gpu_count(wsl) == 1


def test_child_gets_pci_bus_order(tmp_path):
    out = tmp_path / "env.txt"
    subprocess.run(slot_cmd(tmp_path / "locks", "--gpus", "1", "--", sys.executable, "-c",
                            f"import os; open({str(out)!r}, 'w').write(os.environ['CUDA_DEVICE_ORDER'])"),
                   env=clean_env(), check=True)
    assert out.read_text() == "PCI_BUS_ID"
