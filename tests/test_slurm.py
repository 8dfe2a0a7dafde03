"""A real SLURM in the tests: a single-node cluster on localhost (tests/slurm/cluster.sh), driven
by `snakemake --profile profiles/slurm`, as a user would.

Needs root and Debian's slurm-wlm/munge packages (.ci/slurm-setup.sh installs them unless
EMOGRID_SLURM_NO_INSTALL=1); skips with the reason otherwise. Only this machine's daemons that
the fixture started are stopped afterwards, by PID (tests/slurm/cluster.sh stop).

Every job must have gone through sbatch: its SLURM job id (from Snakemake's log) must be
COMPLETED in the controller's job-completion log and in `squeue -t all`, and the job itself
records its SLURM_JOB_ID where the test can see it.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
SETUP = REPO / ".ci" / "slurm-setup.sh"
STATE_DIR = Path(os.environ.get("EMOGRID_SLURM_DIR", "/tmp/emogrid-slurm"))
# Without slurmdbd `sacct` can't answer, so the test cluster is polled with squeue (MinJobAge
# in cluster.sh is 600 s >= 3 x the first-poll delay). Real clusters keep the profile defaults.
SLURM_TEST_FLAGS = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2"]
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+)")


def _skip(reason: str):
    print(f"\nSKIP slurm tests: {reason}", file=sys.stderr)
    pytest.skip(reason)


def _installed() -> bool:
    return all(Path(p).exists() for p in ("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/sbatch",
                                          "/usr/sbin/munged"))


@pytest.fixture(scope="session")
def slurm_cluster():
    if os.geteuid() != 0:
        _skip("needs root (starts munged, slurmctld and slurmd)")
    if not _installed():
        if os.environ.get("EMOGRID_SLURM_NO_INSTALL") == "1":
            _skip("slurm-wlm/munge not installed and EMOGRID_SLURM_NO_INSTALL=1")
        proc = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or not _installed():
            _skip(f"could not install the Debian packages: {proc.stderr.strip()[-500:]}")
    if shutil.which("snakemake") is None:
        _skip("snakemake not on PATH")

    # one test cluster per machine: serialise concurrent test sessions (other checkouts)
    lock = open("/tmp/emogrid-slurm-test.lock", "w")
    deadline = time.monotonic() + 600
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                _skip("another test session kept the local SLURM cluster for 10 minutes")
            time.sleep(1)

    already_up = subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True).returncode == 0
    started = time.monotonic()
    proc = subprocess.run(["bash", str(CLUSTER), "start"], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        lock.close()
        pytest.fail(f"cluster.sh start failed:\n{proc.stdout}\n{proc.stderr}")
    print(f"\nlocal SLURM cluster up in {time.monotonic() - started:.1f} s "
          f"({'reused' if already_up else 'started'}; state in {STATE_DIR})", file=sys.stderr)
    try:
        yield STATE_DIR
    finally:
        if not already_up:
            subprocess.run(["bash", str(CLUSTER), "stop"], capture_output=True, timeout=120)
        lock.close()


def run_snakemake(workdir: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    cmd = ["snakemake", "--profile", str(REPO / "profiles" / "slurm"), *SLURM_TEST_FLAGS, *args]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    (workdir / "snakemake.out").write_text(proc.stdout + proc.stderr)
    return proc


def assert_through_sbatch(state_dir: Path, job_ids: list[str]) -> None:
    """Each SLURM job id is COMPLETED in the jobcomp log and in `squeue -t all`."""
    assert job_ids, "no job was submitted to SLURM"
    jobcomp = (state_dir / "jobcomp.log").read_text()
    states = dict(re.findall(r"JobId=(\d+) .*?JobState=(\S+)", jobcomp))
    for job_id in job_ids:
        assert states.get(job_id) == "COMPLETED", f"SLURM job {job_id}: {states.get(job_id)!r} in jobcomp.log"
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i %T"],
                         capture_output=True, text=True, timeout=30).stdout
    seen = dict(line.split() for line in out.splitlines() if line.strip())
    for job_id in job_ids:
        assert seen.get(job_id) == "COMPLETED", f"squeue -t all: job {job_id} is {seen.get(job_id)!r}"


TRIVIAL = textwrap.dedent(
    r"""
    rule all:
        input: expand("out/gpu{i}.txt", i=range(3)), "out/cpu.txt", "out/flaky.txt"

    # a GPU job: SLURM assigns a (fake) GPU; emogrid gpu-slot keeps SLURM's choice, takes no lock
    rule gpu:
        output: "out/gpu{i}.txt"
        resources: gpu=1, mem_mb=300, runtime=5, cpus_per_task=1
        shell:
            "emogrid gpu-slot --gpus 1 --lock-dir locks -- sh -c "
            "'echo job=$SLURM_JOB_ID cvd=$CUDA_VISIBLE_DEVICES' > {output}"

    rule cpu:
        output: "out/cpu.txt"
        resources: mem_mb=300, runtime=5, cpus_per_task=1
        shell: "echo job=${{SLURM_JOB_ID:-none}} > {output}"

    # fails on its first attempt: the profile's retries resubmit it
    rule flaky:
        output: "out/flaky.txt"
        resources: mem_mb=300, runtime=5, cpus_per_task=1, attempt=lambda wc, attempt: attempt
        shell: "test {resources.attempt} -ge 2 && echo job=${{SLURM_JOB_ID:-none}} > {output}"
    """
)


def test_trivial_workflow_through_sbatch(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(TRIVIAL)
    started = time.monotonic()
    proc = run_snakemake(tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    print(f"trivial workflow via SLURM: {time.monotonic() - started:.1f} s", file=sys.stderr)

    job_ids = SUBMITTED.findall(log)
    assert len(job_ids) == 6, f"3 gpu + 1 cpu + 2 flaky attempts expected, got {job_ids}"
    # the failed first attempt of `flaky` is FAILED, the rest COMPLETED
    out_ids = []
    for name in ["gpu0", "gpu1", "gpu2", "cpu", "flaky"]:
        text = (tmp_path / "out" / f"{name}.txt").read_text()
        job = re.search(r"job=(\d+)", text)
        assert job, f"{name} did not run inside a SLURM job: {text!r}"
        assert job.group(1) in job_ids
        out_ids.append(job.group(1))
        if name.startswith("gpu"):
            cvd = re.search(r"cvd=(\S*)", text).group(1)
            assert cvd in {"0", "1", "2", "3"}, f"SLURM should have set CUDA_VISIBLE_DEVICES: {text!r}"
    assert_through_sbatch(slurm_cluster, out_ids)
    assert not (tmp_path / "locks").exists() or not any((tmp_path / "locks").iterdir()), \
        "under SLURM gpu-slot must not lock"
