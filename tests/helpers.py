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

    `--configfile config.yaml CONFIGFILES...`: the repo's config.yaml is named first, a base the
    test's partial configs merge over, unless `base` is False (then `configfiles` are the whole
    study; with none, the Snakefile reads its default study, config.yaml, itself).
    """
    files = [str(REPO / "config.yaml")] * base + [*map(str, configfiles)]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           *(["--configfile", *files] if files else []), *args]
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


def plan_config(stdout: str) -> dict:
    """The config Snakemake merged, as its plan rule passes it (in the output of `snakemake -n -p`)."""
    import json
    import shlex

    for line in stdout.splitlines():
        if "-m emogrid plan --config-json" in line:
            words = shlex.split(line)
            return json.loads(words[words.index("--config-json") + 1])
    raise AssertionError("no `emogrid plan` command in the dry run:\n" + stdout[-2000:])
