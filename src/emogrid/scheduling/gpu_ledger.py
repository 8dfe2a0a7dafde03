"""Several cells on one GPU: a share ledger that survives killed jobs and concurrent Snakemakes.

`emogrid gpu-slot --cells-per-gpu auto --mem-mb M` (or `--cells-per-gpu N`) places a job on a
GPU that has room for it and waits while none has. Each GPU's occupancy is the sum of its live
*shares*, a share being the fraction of the GPU a job holds: its planned GPU memory over the
GPU's memory (`auto`), or 1/N (`N`). Everything lives in the machine-wide lock directory, so two
Snakemake runs (two studies) on one machine see each other's jobs:

    ledger.lock                  a mutex (flock) held only while a job picks its GPU
    gpu-<id>.lock                the device lock: a packed job holds it *shared* (LOCK_SH), a
                                 whole-GPU job (cells_per_gpu 1, multi-GPU cells) exclusive, so
                                 the two kinds never mix on one device
    gpu-<id>.share.<pid>.<n>     one file per packed job: {"fraction", "mb", ...}; the job holds
                                 an exclusive flock on it for its whole life
    gpu-<id>.want.<pid>.<n>      a whole-GPU job waiting for this GPU: no new packed job is
                                 placed there until it got the GPU (no starvation)

The locked descriptors are inherited by the command gpu-slot execs, so a share lasts exactly as
long as the job; when a job dies in any way (SIGKILL included) the OS drops its locks, and the
next job that scans the ledger finds the share file unlocked and deletes it. No daemon, no
timeouts, no PIDs to trust.

Headroom (`auto`): shares fill a GPU to at most memory.total less max(1 GiB, 5 %) (usable_mb).
memory.total counts memory no process gets (the driver keeps ~0.5 GiB of an H100's 80 GiB), and
each process holds memory outside its plan that the plan cannot see (kernels a library loads
late, its own workspaces); an estimate that is short by a few percent must not push the last
cell on a full GPU out of memory. A packed job's own PyTorch is capped at its share
(emogrid.models.devices.cap_gpu_memory), so a job that outgrows its plan fails itself, not its
neighbour.

Co-tenants: each share records the jobs that shared its GPU (`co_tenants`: those there when it
was placed, and each one placed beside it later, added under the mutex), so a cell's timings can
say they were measured beside other cells (emogrid.training.efficiency).

GPU memory per device: env EMOGRID_GPU_MEM_MB (one value for all, or one per GPU in pool order;
how tests declare fake GPUs, and how to pack into less than a whole GPU), else
`nvidia-smi --query-gpu=memory.total`; a MIG instance (a MIG-... id) from its profile in
`nvidia-smi -L` (1g.10gb: 95 % of 10 GiB), and a GPU split into MIG instances is refused by its
physical id (its memory.total is the whole GPU's, which no job gets).
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from emogrid.errors import EmogridError

EPSILON = 1e-9
HEADROOM_FRACTION, HEADROOM_MIN_MB = 0.05, 1024.0
MAX_CO_TENANTS = 100  # a share file names at most this many (and counts the rest)
_counter = itertools.count()


def usable_mb(capacity_mb: float) -> float:
    """What packed shares may fill of a GPU with `capacity_mb` (memory.total): all but the headroom."""
    return capacity_mb - max(HEADROOM_MIN_MB, HEADROOM_FRACTION * capacity_mb)


def job_label(command: list[str]) -> str:
    """How a job is named to its co-tenants: the `--out` of an `emogrid train` (its cell folder),
    else the start of its command."""
    for i, arg in enumerate(command):
        if arg == "--out" and i + 1 < len(command):
            return command[i + 1]
        if arg.startswith("--out="):
            return arg[len("--out="):]
    return " ".join(command)[:120]


def parse_mode(text: str | int | None) -> str | int:
    """`auto` or a positive integer (cells per GPU); 1 = one job per GPU (no packing)."""
    if text is None or text == "":
        return 1
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    elif str(text).strip() == "auto":
        return "auto"
    else:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise EmogridError(f"cells per GPU: expected `auto` or an integer >= 1, got {text!r}") from None
    if value < 1:
        raise EmogridError(f"cells per GPU: expected `auto` or an integer >= 1, got {value}")
    return value


def gpu_memory_mb(pool: list[str], env: dict) -> dict[str, float]:
    """Memory (MiB) of each GPU in the pool: EMOGRID_GPU_MEM_MB, else nvidia-smi."""
    declared = env.get("EMOGRID_GPU_MEM_MB", "").strip()
    if declared:
        parts = [p.strip() for p in declared.split(",") if p.strip()]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise EmogridError(
                f"EMOGRID_GPU_MEM_MB: expected MiB per GPU, e.g. 81920 or 81920,40960; got {declared!r}"
            ) from None
        if any(v <= 0 for v in values) or len(values) not in (1, len(pool)):
            raise EmogridError(f"EMOGRID_GPU_MEM_MB: give one positive value, or one per GPU ({len(pool)}); "
                               f"got {declared!r}")
        return {gpu: values[0] if len(values) == 1 else values[i] for i, gpu in enumerate(pool)}
    found = _nvidia_smi_memory()
    migs, split = _nvidia_smi_mig()
    for gpu in pool:
        if gpu in split:  # a whole GPU in MIG mode: no job gets all of it
            raise EmogridError(f"GPU {gpu} is split into MIG instances ({', '.join(split[gpu])}); its memory.total "
                               "is the physical GPU's, which no job gets",
                               hint="hand out the instances: EMOGRID_GPU_IDS=<their MIG-... UUIDs, from "
                                    "`nvidia-smi -L`> (each sized from its profile), or declare EMOGRID_GPU_MEM_MB")
    found.update(migs)
    missing = [gpu for gpu in pool if gpu not in found]
    if missing:
        raise EmogridError(f"cannot learn the memory of GPU(s) {','.join(missing)} (nvidia-smi missing or silent)",
                           hint="declare it: EMOGRID_GPU_MEM_MB=81920 (MiB, one value or one per GPU), "
                                "or set resources.train.gpu_mem_mb")
    return {gpu: found[gpu] for gpu in pool}


def _nvidia_smi_memory() -> dict[str, float]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return {}
    try:
        res = subprocess.run([exe, "--query-gpu=index,uuid,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return {}
    out = {}
    for line in res.stdout.splitlines() if res.returncode == 0 else []:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            try:
                out[parts[0]] = out[parts[1]] = float(parts[2])
            except ValueError:
                continue
    return out


# e.g. "  MIG 3g.40gb     Device  0: (UUID: MIG-4b2c...)" under "GPU 0: NVIDIA A100 ... (UUID: GPU-...)"
_GPU_LINE = re.compile(r"^GPU (\d+): .*\(UUID: (GPU-[^)]+)\)")
_MIG_LINE = re.compile(r"^\s+MIG (\S+)\s+Device\s+\d+: \(UUID: (MIG-[^)]+)\)")
_MIG_GB = re.compile(r"\.(\d+)gb$")
MIG_USABLE = 0.95  # a profile's "Ngb" overstates it: 1g.10gb has 9.5 GiB, 3g.40gb 39.25 GiB


def _nvidia_smi_mig() -> tuple[dict[str, float], dict[str, list[str]]]:
    """MIG instances from `nvidia-smi -L`: ({MIG UUID: MiB from its profile, at most}, {GPU index
    and UUID: [its instances]}). A MIG instance is not in --query-gpu, which reports the physical
    GPU's memory."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return {}, {}
    try:
        res = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return {}, {}
    memory: dict[str, float] = {}
    split: dict[str, list[str]] = {}
    gpu: tuple[str, str] | None = None
    for line in res.stdout.splitlines() if res.returncode == 0 else []:
        if m := _GPU_LINE.match(line):
            gpu = (m.group(1), m.group(2))
        elif (m := _MIG_LINE.match(line)) and gpu is not None:
            profile, uuid = m.group(1), m.group(2)
            gb = _MIG_GB.search(profile)
            if gb:
                memory[uuid] = MIG_USABLE * int(gb.group(1)) * 1024
            for key in gpu:
                split.setdefault(key, []).append(f"{uuid} {profile}")
    return memory, split


# --------------------------------------------------------------------------- the ledger


def _flock(fd: int, flags: int) -> bool:
    try:
        fcntl.flock(fd, flags | fcntl.LOCK_NB)
        return True
    except OSError as err:
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


def _remove(path: Path) -> None:
    """Delete a dead share/want file; another user's in sticky /tmp may not be ours to delete
    (EPERM): it stays, unlocked, and keeps counting as dead."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def live_shares(directory: Path, key: str, *, clean: bool = True) -> list[dict]:
    """The live shares of one GPU. With `clean`, dead ones (unlocked files) are deleted: call it
    only while holding the ledger mutex."""
    shares = []
    for path in sorted(directory.glob(f"gpu-{key}.share.*")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            if _flock(fd, fcntl.LOCK_EX):  # nobody holds it: its job is gone
                if clean:
                    _remove(path)
                continue
            try:
                record = json.loads(os.pread(fd, 1 << 20, 0).decode("utf-8", "replace") or "{}")
            except (json.JSONDecodeError, OSError):
                record = {}
            # a share being written right now (under the mutex, so only when not cleaning) counts as whole
            record.setdefault("fraction", 1.0)
            record["file"] = path.name
            shares.append(record)
        finally:
            os.close(fd)
    return shares


def live_wants(directory: Path, key: str, *, clean: bool = True) -> int:
    """Whole-GPU jobs waiting for this GPU (`gpu-<id>.want.<pid>`, flock'ed by the waiter).
    While one waits, no new packed job is placed on the GPU, so it empties and the waiter gets it
    instead of starving behind a stream of small cells."""
    count = 0
    for path in directory.glob(f"gpu-{key}.want.*"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            if _flock(fd, fcntl.LOCK_EX):
                if clean:
                    _remove(path)
            else:
                count += 1
        finally:
            os.close(fd)
    return count


def reserve(directory: Path, key: str) -> tuple[Path, int]:
    """Mark this GPU as wanted by a waiting whole-GPU job (released by `unreserve` or death)."""
    path = directory / f"gpu-{key}.want.{os.getpid()}.{next(_counter)}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return path, fd


def unreserve(wants: list[tuple[Path, int]]) -> None:
    for path, fd in wants:
        path.unlink(missing_ok=True)
        os.close(fd)


def used_fraction(directory: Path, key: str, *, clean: bool = True) -> float:
    return sum(float(s.get("fraction", 1.0)) for s in live_shares(directory, key, clean=clean))


class Ledger:
    def __init__(self, directory: Path, lock_key, open_slot_file):
        self.directory = directory
        self.lock_key = lock_key
        self.open_slot_file = open_slot_file

    def _mutex(self) -> int:
        fd = self.open_slot_file(self.directory / "ledger.lock")
        fcntl.flock(fd, fcntl.LOCK_EX)  # blocking; held for milliseconds
        return fd

    def try_place(self, pool: list[str], fraction_of, mb: float | None, info: dict,
                  limit_of=None) -> tuple[str, list[int], Path] | None:
        """Place one share on the GPU with the most room that fits; (gpu_id, [fds], share file)
        or None.

        `fraction_of(gpu_id)`: the share this job needs on that GPU (GPUs may differ in memory);
        `limit_of(gpu_id)`: the fraction shares may fill (default 1: `N` cells per GPU count
        jobs, not memory)."""
        mutex = self._mutex()
        try:
            candidates = []
            for gpu in pool:
                key = self.lock_key(gpu)
                device_fd = self.open_slot_file(self.directory / f"gpu-{key}.lock")
                if not _flock(device_fd, fcntl.LOCK_SH) or live_wants(self.directory, key):
                    os.close(device_fd)  # a whole-GPU job holds it, or waits for it
                    continue
                free = (limit_of(gpu) if limit_of else 1.0) - used_fraction(self.directory, key)
                if fraction_of(gpu) <= free + EPSILON:
                    candidates.append((free, gpu, key, device_fd))
                else:
                    os.close(device_fd)
            if not candidates:
                return None
            # spread: the GPU with the most room (compute is shared too; fills evenly)
            candidates.sort(key=lambda c: (-c[0], pool.index(c[1])))
            _, gpu, key, device_fd = candidates[0]
            for _, _, _, fd in candidates[1:]:
                os.close(fd)
            neighbours = live_shares(self.directory, key)
            label = info.get("label") or info.get("cmd", "")
            for other in neighbours:  # each one now shares its GPU with this job too
                _add_co_tenant(self.directory / other["file"], label)
            share = self.directory / f"gpu-{key}.share.{os.getpid()}.{next(_counter)}"
            share_fd = os.open(share, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            fcntl.flock(share_fd, fcntl.LOCK_EX)
            record = {"fraction": fraction_of(gpu), "mb": mb, "gpu": gpu, "pid": os.getpid(), **info,
                      "co_tenants": [n.get("label") or n.get("cmd", "?") for n in neighbours][:MAX_CO_TENANTS],
                      "co_tenants_more": max(0, len(neighbours) - MAX_CO_TENANTS)}
            os.pwrite(share_fd, json.dumps(record).encode("utf-8", "replace"), 0)
            try:
                os.fchmod(share_fd, 0o666)
            except OSError:
                pass
            return gpu, [device_fd, share_fd], share
        finally:
            os.close(mutex)

    def read_share(self, share: Path) -> dict:
        """A share's record as it stands now (under the mutex: a co-tenant may be adding itself)."""
        mutex = self._mutex()
        try:
            return json.loads(share.read_text(encoding="utf-8", errors="replace") or "{}")
        except (OSError, json.JSONDecodeError):
            return {}
        finally:
            os.close(mutex)

    def acquire(self, pool: list[str], fraction_of, mb: float | None, info: dict, *, limit_of=None,
                poll: float = 0.5, log=None, wait_message_every: float = 60.0) -> tuple[str, list[int], Path]:
        started = time.monotonic()
        last = None
        while True:
            placed = self.try_place(pool, fraction_of, mb, info, limit_of)
            if placed is not None:
                return placed
            now = time.monotonic()
            if log and (last is None or now - last >= wait_message_every):
                need = f"{mb:.0f} MiB" if mb else f"{fraction_of(pool[0]):.3g} of a GPU"
                log(f"emogrid gpu-slot: no GPU has room for {need} ({len(pool)} GPUs); waiting "
                    f"({now - started:.0f} s so far; `emogrid gpu-slot --list` shows the shares)")
                last = now
            time.sleep(poll)


def _add_co_tenant(path: Path, label: str) -> None:
    """Add `label` to a live share's co-tenants (called under the mutex). Its owner holds an
    advisory lock, which does not stop this write; a share of another user we may not write
    (sticky /tmp) keeps its list as it was."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return
    try:
        record = json.loads(os.pread(fd, 1 << 20, 0).decode("utf-8", "replace") or "{}")
        names = list(record.get("co_tenants") or [])
        if label in names:
            return
        if len(names) < MAX_CO_TENANTS:
            names.append(label)
        else:
            record["co_tenants_more"] = int(record.get("co_tenants_more") or 0) + 1
        record["co_tenants"] = names
        data = json.dumps(record).encode("utf-8", "replace")
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    except (OSError, json.JSONDecodeError):
        pass
    finally:
        os.close(fd)


def share_fraction(mode: str | int, mem_mb: float | None, capacity_mb: float | None) -> float:
    """The fraction of one GPU a job holds."""
    if mode == "auto":
        if not mem_mb:
            return 1.0  # no plan: the job gets a whole GPU
        return float(mem_mb) / float(capacity_mb)  # > 1: never fits this GPU
    return 1.0 / int(mode)
