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
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
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
SLURM_TEST_FLAGS = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
                    "--slurm-keep-successful-logs"]
RESULTS = "results/goemotions-qlora"  # config.yaml's study.name (the study file sets none)
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
        proc = subprocess.run(["bash", str(SETUP), "--strict"], capture_output=True, text=True, timeout=600)
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


def run_snakemake(workdir: Path, *args: str, profile: Path = REPO / "profiles" / "slurm",
                  timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    cmd = ["snakemake", "--profile", str(profile), *SLURM_TEST_FLAGS, *args]
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
        input: expand("out/gpu{i}.txt", i=range(2)), "out/flaky.txt", "out/preempted.txt"

    # a GPU job: SLURM assigns a (fake) GPU; emogrid gpu-slot keeps SLURM's choice, takes no lock
    rule gpu:
        output: "out/gpu{i}.txt"
        resources: gpu=1, mem_mb=300, runtime=5, cpus_per_task=1
        shell:
            "emogrid gpu-slot --gpus 1 --lock-dir locks -- sh -c "
            "'echo job=$SLURM_JOB_ID cvd=$CUDA_VISIBLE_DEVICES' > {output}"

    # fails on its first attempt: the profile's retries resubmit it
    rule flaky:
        output: "out/flaky.txt"
        resources: mem_mb=300, runtime=5, cpus_per_task=1, attempt=lambda wc, attempt: attempt
        shell: "test {resources.attempt} -ge 2 && echo job=${{SLURM_JOB_ID:-none}} > {output}"

    # preempted while running (the test requeues it): SLURM reruns it under the same job id
    rule preempted:
        output: "out/preempted.txt"
        resources: mem_mb=300, runtime=5, cpus_per_task=1
        shell:
            "echo job=${{SLURM_JOB_ID:-none}} restart=${{SLURM_RESTART_COUNT:-0}} >> preempted.log; "
            "touch preempted.running; sleep 6; echo job=${{SLURM_JOB_ID:-none}} > {output}"
    """
)


def _scontrol_job(job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30).stdout


class Background:
    """The trivial workflow, started early and checked last: it overlaps the emogrid grid test,
    so the two share their status-poll waits (the SLURM test stays near two minutes)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        (workdir / "Snakefile").write_text(TRIVIAL)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        cmd = ["snakemake", "--profile", str(REPO / "profiles" / "slurm"), *SLURM_TEST_FLAGS]
        self.out = open(workdir / "snakemake.out", "w")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=self.out, stderr=subprocess.STDOUT,
                                     text=True)
        self.preemption = threading.Thread(target=self._preempt, daemon=True)
        self.preempted_job: str | None = None
        self.preemption.start()

    def _preempt(self) -> None:
        """Like a preemption: requeue the running `preempted` job once, and let it start again
        at once (SLURM otherwise holds a requeued job for two minutes)."""
        marker = self.workdir / "preempted.running"
        deadline = time.monotonic() + 200
        while not marker.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                return
            time.sleep(0.2)
        job = re.search(r"job=(\d+)", (self.workdir / "preempted.log").read_text())
        if not job:
            return
        self.preempted_job = job.group(1)
        subprocess.run(["scontrol", "requeue", self.preempted_job], capture_output=True, timeout=30)
        for _ in range(60):  # COMPLETING (the killed run) -> PENDING (held) -> RUNNING
            time.sleep(0.5)
            state = subprocess.run(["squeue", "-h", "-j", self.preempted_job, "-o", "%T"],
                                   capture_output=True, text=True, timeout=30).stdout.strip()
            if state == "PENDING":
                subprocess.run(["scontrol", "update", f"JobId={self.preempted_job}", "StartTime=now"],
                               capture_output=True, timeout=30)
            elif state in ("RUNNING", "COMPLETED", ""):
                break

    def wait(self, timeout: float = 300) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                self.proc.wait(timeout=30)
            self.out.close()
        return code, (self.workdir / "snakemake.out").read_text()


@pytest.fixture(scope="module")
def trivial_run(slurm_cluster, tmp_path_factory):
    run = Background(tmp_path_factory.mktemp("trivial"))
    yield run
    if run.proc.poll() is None:
        run.proc.terminate()
        run.proc.wait(timeout=30)


def test_emogrid_grid_through_slurm(slurm_cluster, trivial_run, tmp_path, monkeypatch):
    """The README's cluster recipe on the repo's Snakefile with tiny models: one cell as a test
    job first, then the whole grid (2 cells + data + tables/figures), every job via sbatch
    except the fetch of the hub model (a localrule, on the 'login node'); its training job
    loads the fetched snapshot offline."""
    pytest.importorskip("emogrid.training.train")
    pytest.importorskip("transformers")
    from tests.helpers import require_data
    from tests.hub_cache import COMMIT, lay_out_model
    from tests.tiny_models import build_tiny_model

    data = require_data()
    models = {name: build_tiny_model(family, tmp_path / "models" / family)
              for name, family in (("tiny-bert", "bert"), ("tiny-gpt2", "gpt2"))}
    work = tmp_path / "work"
    # tiny-gpt2 comes "from the hub": a cache laid out where fetch_model looks (<results>/hub)
    lay_out_model(work / RESULTS / "hub", "test-org/tiny-gpt2", models["tiny-gpt2"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    study = tmp_path / "study.yaml"
    study.write_text(textwrap.dedent(f"""\
        data: {{path: {data}}}
        grid: {{labels: [2], samples: [40], models: [tiny-bert, tiny-gpt2], methods: [lora], seeds: [0]}}
        models:
          tiny-bert: {{path: {models["tiny-bert"]}}}
          tiny-gpt2: {{id: test-org/tiny-gpt2}}
        train: {{epochs: 1, batch_size: 8, eval_batch_size: 32, max_length: 32, patience: 0}}
        resources:
          train: {{gpu: 1, mem_mb: 2000, runtime: 15, cpus_per_task: 1}}
          data: {{mem_mb: 1000, runtime: 5, cpus_per_task: 1}}
          report: {{mem_mb: 1000, runtime: 5, cpus_per_task: 1}}
        """))
    # the README's "set your partition once": uncomment the slurm_partition line of the profile
    profile = tmp_path / "profile"
    profile.mkdir()
    text = (REPO / "profiles" / "slurm" / "config.yaml").read_text()
    assert "  # - slurm_partition=" in text
    text = re.sub(r"  # - slurm_partition=\S+", "  - slurm_partition=gpu", text)
    (profile / "config.yaml").write_text(text)
    common = ["-s", str(REPO / "Snakefile"), "--configfile", str(REPO / "config.yaml"), str(study)]
    cell = "goemotions/tiny-bert/lora/k2_n40/s0"

    started = time.monotonic()
    # targets before --configfile (which takes several values and would swallow them)
    one = run_snakemake(work, f"{RESULTS}/runs/{cell}/metrics.json", *common, profile=profile)
    log_one = one.stdout + one.stderr
    assert one.returncode == 0, log_one[-5000:]
    ids_one = SUBMITTED.findall(log_one)
    assert len(ids_one) == 2, f"a single cell = its data job + its training job: {ids_one}"
    assert not (work / RESULTS / "runs/goemotions/tiny-gpt2").exists()

    grid = run_snakemake(work, *common, profile=profile)
    log_grid = grid.stdout + grid.stderr
    assert grid.returncode == 0, log_grid[-5000:]
    ids_grid = SUBMITTED.findall(log_grid)
    print(f"emogrid grid via SLURM: {time.monotonic() - started:.1f} s, jobs {ids_one + ids_grid}", file=sys.stderr)
    assert_through_sbatch(slurm_cluster, ids_one + ids_grid)
    # the grid run reused the finished cell and its data: only the other cell + the report steps
    assert "Rule: prepare_data" not in log_grid
    assert len(re.findall(r"Finished jobid: \d+ \(Rule: train\)", log_grid)) == 1
    # the hub model was fetched by a local job, never submitted, before its training job
    assert "localrule fetch_model:" in log_grid
    slurm_logs = work / ".snakemake" / "slurm_logs"
    assert (slurm_logs / "rule_train").is_dir() and not (slurm_logs / "rule_fetch_model").exists()

    for name in ("tiny-bert", "tiny-gpt2"):
        metrics = json.loads((work / RESULTS / f"runs/goemotions/{name}/lora/k2_n40/s0/metrics.json").read_text())
        assert metrics["status"] == "ok" and 0.0 <= metrics["test"]["accuracy"] <= 1.0
        if name == "tiny-gpt2":
            assert metrics["provenance"]["model_source"]["commit"] == COMMIT
    assert any((work / RESULTS / "tables").iterdir())

    # every training job got a (fake) GPU from SLURM, kept by emogrid gpu-slot, and is requeueable
    assert len(list((work / ".snakemake" / "slurm_logs" / "rule_train").glob("**/*.log"))) == 2
    # the job's own output (gpu-slot's line included) goes to the rule's log file
    job_logs = list((work / RESULTS / "logs" / "train").glob("**/*.log"))
    assert len(job_logs) == 2
    for path in job_logs:
        text = path.read_text()
        assert re.search(r"keeping its assignment: CUDA_VISIBLE_DEVICES=[0-3]\b", text), text[-2000:]
    for job_id in ids_one + ids_grid:
        info = _scontrol_job(job_id)
        assert "Requeue=1" in info, info
        assert "Partition=gpu" in info, f"the profile's slurm_partition did not reach job {job_id}"


def test_trivial_workflow_through_sbatch(slurm_cluster, trivial_run):
    """Cluster + plugin alone: GPU jobs get SLURM's GPU through gpu-slot; a failed job is seen
    as FAILED through squeue and resubmitted by the profile's retries; a preempted (requeued)
    job runs again under the same job id and Snakemake waits for it."""
    tmp_path = trivial_run.workdir
    code, log = trivial_run.wait()
    assert code == 0, log[-4000:]
    print(f"trivial workflow via SLURM: {time.monotonic() - trivial_run.started:.1f} s", file=sys.stderr)

    job_ids = SUBMITTED.findall(log)
    assert len(job_ids) == 5, f"2 gpu + 2 flaky attempts + 1 preempted expected, got {job_ids}"
    # the failed first attempt of `flaky` is FAILED, the rest COMPLETED
    assert trivial_run.preempted_job, "the preemption never happened"
    runs = [line.split()[0] for line in (tmp_path / "preempted.log").read_text().splitlines() if line]
    assert runs == [f"job={trivial_run.preempted_job}"] * 2, f"ran once before and once after the requeue: {runs}"
    assert "Requeue=1" in _scontrol_job(trivial_run.preempted_job)
    out_ids = []
    for name in ["gpu0", "gpu1", "flaky", "preempted"]:
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


PACKED = textwrap.dedent(
    r"""
    # What the train rule does, on a trivial job: export the declared GPU count, and let gpu-slot
    # pack (Snakemake does not count a share of a GPU)
    from emogrid.scheduling.resources import export_declared_gpus

    export_declared_gpus(workflow.global_resources)

    rule all:
        input: expand("out/c{i}.json", i=range(4))

    rule cell:
        output: "out/c{i}.json"
        resources: gpu=0
        shell: "{PY} -m emogrid gpu-slot --mem-mb 4000 -- {PY} {CHILD} {output}"
    """
)

PACKED_CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    start = time.time()
    time.sleep(4)
    json.dump({"job": os.environ.get("SLURM_JOB_ID"), "cvd": os.environ.get("CUDA_VISIBLE_DEVICES"),
               "start": start, "end": time.time()}, open(sys.argv[1], "w"))
    """
)


def test_packed_allocation(slurm_cluster, tmp_path):
    """README's "one allocation of whole GPUs" recipe: profiles/slurm-allocation/emogrid.sbatch
    with 2 (fake) GPUs of 10000 MiB runs a workstation Snakemake inside; 4 cells of 4000 MiB pack
    two per GPU, all inside that one SLURM job, never more than fit on a GPU."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "child.py").write_text(PACKED_CHILD)
    (work / "Snakefile").write_text(PACKED.replace("{PY}", sys.executable).replace("{CHILD}", str(work / "child.py")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(EMOGRID_CELLS_PER_GPU="auto", EMOGRID_GPU_MEM_MB="10000", EMOGRID_REPO=str(REPO),
               EMOGRID_GPU_LOCK_DIR=str(tmp_path / "locks"),
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]))
    started = time.monotonic()
    proc = subprocess.run(["sbatch", "--wait", "--parsable", "--gpus=2", "--cpus-per-task=4", "--mem=1000",
                           "-t", "10", "--partition=gpu", f"--chdir={work}", f"--output={work}/alloc.out",
                           str(REPO / "profiles" / "slurm-allocation" / "emogrid.sbatch"), "-s", "Snakefile"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    out = (work / "alloc.out").read_text() if (work / "alloc.out").exists() else ""
    assert proc.returncode == 0, proc.stderr + out[-4000:]
    job_id = proc.stdout.strip().split(";")[0]
    print(f"packed allocation via SLURM: {time.monotonic() - started:.1f} s (job {job_id})", file=sys.stderr)
    assert_through_sbatch(slurm_cluster, [job_id])
    recs = [json.loads(p.read_text()) for p in sorted((work / "out").glob("c*.json"))]
    assert len(recs) == 4 and {r["job"] for r in recs} == {job_id}, recs  # all inside the one allocation
    gpus = {r["cvd"] for r in recs}
    assert len(gpus) == 2 and all(g in {"0", "1", "2", "3"} for g in gpus), recs
    for gpu in gpus:
        mine = [r for r in recs if r["cvd"] == gpu]
        assert max(sum(1 for o in mine if o["start"] <= r["start"] < o["end"]) for r in mine) <= 2
    assert max(sum(1 for o in recs if o["start"] <= r["start"] < o["end"]) for r in recs) >= 3, recs  # packed
    assert "packed on GPU" in out and f"slurm-{job_id}" in str(list((tmp_path / "locks").iterdir()))
