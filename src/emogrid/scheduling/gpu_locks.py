"""GPU slots as lock files: one `fcntl.flock` per GPU, held by the command's descriptor.

The OS releases a slot however its holder ends (SIGKILL included), so no cleanup is ever
needed; each slot file records who holds it, for `emogrid gpu-slot --list`.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from emogrid.errors import EmogridError
from emogrid.scheduling.gpu_ids import lock_key

DEFAULT_LOCK_DIR = "/tmp/emogrid-gpu-locks"
POLL_SECONDS = 0.25
WAIT_MESSAGE_EVERY = 60.0


def lock_dir(arg: str | None, env: dict) -> Path:
    path = Path(arg or env.get("EMOGRID_GPU_LOCK_DIR") or DEFAULT_LOCK_DIR)
    if not path.is_dir():
        try:
            path.mkdir(parents=True, exist_ok=True)
            if str(path) == DEFAULT_LOCK_DIR:
                os.chmod(path, 0o1777)  # machine-wide: any user may create slot files
        except OSError as err:
            raise EmogridError(f"cannot create the GPU lock directory {path}: {err}",
                               hint="pass --lock-dir or set EMOGRID_GPU_LOCK_DIR") from None
    return path


def _lock_path(directory: Path, gpu_id: str) -> Path:
    return directory / f"gpu-{lock_key(gpu_id)}.lock"


def open_slot_file(path: Path) -> int:
    """Open (creating if needed) a slot file for locking.

    An existing file is opened *without* O_CREAT: with fs.protected_regular (default on recent
    Linux) O_CREAT on another user's file in a sticky world-writable directory such as /tmp fails
    with EACCES even when the file is mode 0666. A file we may not write is opened read-only:
    flock works on any open descriptor."""
    for _ in range(10):
        for flags in (os.O_RDWR, os.O_RDONLY):
            try:
                return os.open(path, flags)
            except FileNotFoundError:
                break
            except PermissionError:
                continue
        else:
            raise PermissionError(errno.EACCES, "neither readable nor writable", str(path))
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue  # another job created it in between: open the existing file
    raise OSError(errno.EAGAIN, "slot file keeps appearing and disappearing", str(path))


def try_lock(directory: Path, gpu_id: str) -> int | None:
    """A file descriptor holding an exclusive lock on this GPU's slot, or None if it is busy."""
    path = _lock_path(directory, gpu_id)
    try:
        fd = open_slot_file(path)
    except PermissionError as err:
        raise EmogridError(f"cannot open GPU slot file {path}: {err}",
                           hint="pass --lock-dir or set EMOGRID_GPU_LOCK_DIR to a writable folder") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    try:
        os.fchmod(fd, 0o666)  # best effort, so other users can lock it later
    except OSError:
        pass
    return fd


def acquire(directory: Path, pool: list[str], need: int, *, poll: float = POLL_SECONDS,
            log=None) -> dict[str, int]:
    """Block until `need` slots of `pool` are free; return {gpu_id: locked fd}.

    All-or-nothing per attempt: a partial set is released before waiting again, so two jobs
    that each need two GPUs can't deadlock holding one each.
    """
    from emogrid.scheduling import gpu_ledger

    started = time.monotonic()
    last_message = None
    wants: list = []
    while True:
        held: dict[str, int] = {}
        for gpu_id in pool:
            fd = try_lock(directory, gpu_id)
            if fd is not None:
                held[gpu_id] = fd
                if len(held) == need:
                    gpu_ledger.unreserve(wants)
                    return held
        for fd in held.values():
            os.close(fd)
        if not wants:
            # reserve the `need` GPUs with the least packed load: packed cells stop joining them
            load = sorted(pool, key=lambda g: (gpu_ledger.used_fraction(directory, lock_key(g), clean=False),
                                               pool.index(g)))
            wants = [gpu_ledger.reserve(directory, lock_key(g)) for g in load[:need]]
        now = time.monotonic()
        if log and (last_message is None or now - last_message >= WAIT_MESSAGE_EVERY):
            log(f"emogrid gpu-slot: all {len(pool)} GPU slots busy (need {need}); waiting "
                f"({now - started:.0f} s so far; `emogrid gpu-slot --list` shows the holders)")
            last_message = now
        time.sleep(poll)


def record_holder(fd: int, gpu_ids: list[str], command: list[str]) -> None:
    info = (f"pid={os.getpid()} gpus={','.join(gpu_ids)} since={time.strftime('%Y-%m-%dT%H:%M:%S')} "
            f"host={os.uname().nodename} cmd={' '.join(command)[:300]}\n")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode("utf-8", "replace"), 0)
    except OSError:
        pass


def list_slots(directory: Path, pool: list[str]) -> int:
    from emogrid.scheduling.gpu_ledger import live_shares

    print(f"lock dir: {directory}   GPUs: {','.join(pool) if pool else '(none)'}")
    for gpu_id in pool:
        shares = live_shares(directory, lock_key(gpu_id), clean=False)
        fd = try_lock(directory, gpu_id)
        if fd is not None:
            os.close(fd)
            print(f"  gpu {gpu_id}: free")
        elif shares:
            used = sum(float(s.get("fraction", 1.0)) for s in shares)
            print(f"  gpu {gpu_id}: shared by {len(shares)} job(s), {100 * used:.0f}% taken")
            for share in shares:
                mb = f"{share['mb']:.0f} MiB" if share.get("mb") else f"{100 * float(share.get('fraction', 1)):.0f}%"
                print(f"      pid={share.get('pid')} {mb} since={share.get('since')} cmd={share.get('cmd', '')}")
        else:
            text = _lock_path(directory, gpu_id).read_text(errors="replace").strip()
            print(f"  gpu {gpu_id}: busy  {text}")
    return 0
