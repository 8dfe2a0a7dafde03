"""emogrid as an installed package: package data through importlib.resources, a wheel that
works outside the checkout (no `-e`, no network)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from emogrid import package_data
from emogrid.planning.structure import BUNDLED_CONFIGS
from tests.helpers import REPO, require_data


def test_workflow_schema_is_the_package_schema():
    """Researchers read workflow/schemas/config.schema.yaml; it must be the shipped file."""
    link = REPO / "workflow" / "schemas" / "config.schema.yaml"
    assert link.is_symlink()
    assert link.resolve() == (REPO / "src" / "emogrid" / "schemas" / "config.schema.yaml").resolve()
    assert package_data.schema("config")["title"] == "emogrid study config"


def test_every_bundled_model_config_ships():
    assert set(BUNDLED_CONFIGS) == set(package_data.bundled_model_names())
    for stem in BUNDLED_CONFIGS:
        assert package_data.bundled_model_config(stem)["model_type"]


def _pip(*args: str, cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_wheel_installs_and_runs_grid_outside_the_checkout(tmp_path):
    """`pip install` without -e: the wheel carries the schemas and model configs, and
    `emogrid grid` works from a study folder that is not the checkout."""
    require_data()
    source = tmp_path / "source"  # a clean copy: the build never writes into the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "dist"),
         str(source), cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("emogrid-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"emogrid/schemas/config.schema.yaml", "emogrid/schemas/metrics.schema.yaml",
            "emogrid/schemas/failure.schema.yaml"} <= names
    assert {f"emogrid/model_configs/{stem}.json" for stem in BUNDLED_CONFIGS} <= names

    site = tmp_path / "site"
    _pip("install", "--no-deps", "--no-index", "--target", str(site), str(wheel), cwd=tmp_path)
    study = tmp_path / "study"  # a researcher's folder: their config.yaml and a study file
    (study / "studies").mkdir(parents=True)
    shutil.copy(REPO / "config.yaml", study / "config.yaml")
    shutil.copy(REPO / "studies" / "quickstart.yaml", study / "studies" / "quickstart.yaml")
    env = {**os.environ, "PYTHONPATH": str(site), "PATH": f"{site / 'bin'}{os.pathsep}{os.environ['PATH']}"}

    where = subprocess.run([sys.executable, "-c", "import emogrid; print(emogrid.__file__)"],
                           cwd=study, env=env, capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
    proc = subprocess.run([str(site / "bin" / "emogrid"), "grid", "--configfile", "studies/quickstart.yaml"],
                          cwd=study, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["goemotions/minilm/lora/k2_n800/s0", "goemotions/minilm/lora/k4_n800/s0",
                                   "goemotions/minilm/full/k2_n800/s0", "goemotions/minilm/full/k4_n800/s0"]
    assert "4 training cells" in proc.stderr
