"""A hub cache laid out by the tests, standing in for the network.

huggingface_hub's layout: `<cache>/<models|datasets>--org--name/refs/<revision>` holds the
commit hash, `snapshots/<commit>/` the files. With HF_HUB_OFFLINE=1 `snapshot_download`
resolves a revision through refs/ and returns the snapshot, exactly as after a download.
"""

from __future__ import annotations

import shutil
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _repo(cache: Path, kind: str, repo_id: str, commit: str, revision: str) -> Path:
    repo = Path(cache) / f"{kind}s--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return snapshot


def lay_out_model(cache: Path, repo_id: str, saved_model: Path, *, commit: str = COMMIT,
                  revision: str = "main") -> Path:
    """Put a model saved with save_pretrained into the cache as `repo_id`@`revision`."""
    snapshot = _repo(cache, "model", repo_id, commit, revision)
    for path in Path(saved_model).iterdir():
        if path.is_file():
            shutil.copy2(path, snapshot / path.name)
    return snapshot


def lay_out_dataset(cache: Path, repo_id: str, config: str, splits: dict, *, commit: str = COMMIT,
                    revision: str = "main") -> Path:
    """A dataset repo of parquet files with its card naming `config` and its splits, as on the hub.

    `splits`: {split name: datasets.Dataset}."""
    snapshot = _repo(cache, "dataset", repo_id, commit, revision)
    (snapshot / config).mkdir(exist_ok=True)
    lines = ["---", "configs:", f"- config_name: {config}", "  data_files:"]
    for name, ds in splits.items():
        ds.to_parquet(str(snapshot / config / f"{name}-00000-of-00001.parquet"))
        lines += [f"  - split: {name}", f"    path: {config}/{name}-*"]
    (snapshot / "README.md").write_text("\n".join(lines + ["---", ""]))
    return snapshot
