"""Small shared helpers for tests: repo paths, the local GoEmotions copy, running Snakemake."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path | None:
    """The local GoEmotions copy: $EMOGRID_DATA_DIR, else ../shared/data/goemotions."""
    env = os.environ.get("EMOGRID_DATA_DIR")
    path = Path(env) if env else REPO.parent / "shared" / "data" / "goemotions"
    return path if (path / "original" / "train.tsv").is_file() or (path / "train.tsv").is_file() else None


def require_data() -> Path:
    path = data_dir()
    if path is None:
        pytest.skip("GoEmotions local copy not found (set EMOGRID_DATA_DIR or place it at ../shared/data/goemotions)")
    return path


def snakemake(workdir: Path, *args: str, configfiles=(), env=None, timeout=600,
              base: bool = True) -> subprocess.CompletedProcess:
    """Run the repo's Snakefile with `workdir` as working directory (results land there).

    The repo's config.yaml is merged first unless `base` is False.
    """
    files = [str(REPO / "config.yaml")] * base + [*map(str, configfiles)]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", *files, *args]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=full_env, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table into {rule: count}."""
    block = output.split("Job stats:", 1)[1]
    counts = {}
    for line in block.splitlines()[3:]:
        m = re.match(r"^(\S+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    return counts
