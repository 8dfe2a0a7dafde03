"""The workflow and the code stay lint-clean: `snakemake --lint`, snakefmt and ruff (pinned in
the dev dependencies; configured in pyproject.toml)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(*cmd, cwd=REPO, env=None):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_snakemake_lint_is_clean(tmp_path):
    proc = _run(sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
                "--configfile", str(REPO / "config.yaml"), "--lint", cwd=tmp_path,
                env={"EMOGRID_DATA_DIR": "", "HF_HUB_OFFLINE": "1"})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Lints for" not in out, out[-4000:]


def test_snakefile_and_rules_are_snakefmt_formatted():
    proc = _run(sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
def test_ruff_is_clean():
    proc = _run(sys.executable, "-m", "ruff", "check", ".")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
