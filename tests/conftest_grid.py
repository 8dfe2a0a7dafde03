"""One trained grid for the whole session: the real Snakefile on tiny models, data to report.

Every test that only reads a finished tree (tables, figures, sources, provenance) or dry-runs
against it shares this run instead of training its own. One model comes from the hub cache
(tests/hub_cache.py, fetched offline by the workflow's fetch job), the other from a local folder.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from tests.helpers import require_data, snakemake
from tests.hub_cache import lay_out_model

HUB_MODEL = "test-org/tiny-bert"  # tiny-bert's id in the laid-out hub cache
RESULTS = Path("results") / "e2e"  # the study's own folder: results/<study.name>


@dataclass(frozen=True)
class FinishedGrid:
    work: Path          # Snakemake's working directory (results/e2e/ below it)
    study: Path         # the study file, given after config.yaml
    env: dict           # the environment of every snakemake call against it
    proc: CompletedProcess  # the run that trained it


@pytest.fixture(scope="session")
def finished_grid(tiny_models, tmp_path_factory) -> FinishedGrid:
    """2 labels x 60 samples x {tiny-llama (local path), tiny-bert (hub)} x {lora, full}, seed 0:
    8 cells, tables, figures. Tests may add files (report.html, overlays) but never change results."""
    data = require_data()
    work = tmp_path_factory.mktemp("e2e")
    lay_out_model(work / RESULTS / "hub", HUB_MODEL, tiny_models["bert"])
    study = work / "study.yaml"
    study.write_text(textwrap.dedent(f"""\
        study: {{name: e2e}}
        grid: {{labels: [2, 3], samples: [60], models: [tiny-llama, tiny-bert], methods: [lora, full], seeds: [0]}}
        models:
          tiny-llama: {{path: {tiny_models['llama']}}}
          tiny-bert: {{id: {HUB_MODEL}}}
        train: {{batch_size: 8, epochs: 1, lr: 1.0e-3, precision: fp32}}
        resources: {{train: {{gpu: 0}}}}
        """))
    env = {"EMOGRID_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1"}
    # the timeout guards against a hang only: 8 cells took 16 min on 2 cores shared by ~10 busy processes
    proc = snakemake(work, "--cores", "2", configfiles=[study], env=env, timeout=2400)
    return FinishedGrid(work, study, env, proc)
