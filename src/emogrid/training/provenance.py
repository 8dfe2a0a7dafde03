"""Where a cell's result came from: package versions, device, precision, git commit, model and
data sources, config hash and data checksum, host and times (metrics.json and failure.json).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path


def provenance(spec: dict, data: dict | None, started: str, precision: str | None = None) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("emogrid", "torch", "transformers", "peft", "accelerate", "bitsandbytes", "scikit-learn"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    versions["python"] = sys.version.split()[0]
    device = "cpu"
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            device = torch.cuda.get_device_name(0)
    manifest = (data or {}).get("manifest") or {}
    model = spec.get("model") or {}
    model_source = model.get("source") or {k: model.get(k) for k in ("id", "revision", "path") if model.get(k)}
    return {"versions": versions, "device": device, "precision": precision, "git_commit": git_commit(),
            "model_source": model_source,
            "data_source": {k: v for k, v in (manifest.get("source") or {}).items()
                            if k in ("kind", "id", "config", "revision", "commit", "path")},
            "config_hash": spec.get("config_hash"), "data_checksum": manifest.get("checksum"),
            "hostname": socket.gethostname(), "started": started, "finished": now()}


def git_commit() -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return res.stdout.strip() or None if res.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def now() -> str:
    """The current UTC time, ISO-8601 to the second (provenance's `started` / `finished`)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
