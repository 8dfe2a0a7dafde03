"""envs/*.yaml (for `snakemake --sdm conda`) parse and pin exactly what pyproject.toml pins."""

from __future__ import annotations

import re

import pytest
import tomllib
import yaml

from tests.helpers import REPO


def pyproject_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {}
    for req in project["dependencies"] + project["optional-dependencies"]["dev"]:
        name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^;\s]+)", req).groups()
        pins[name.lower()] = version
    return pins


@pytest.mark.parametrize("env", ["train.yaml", "report.yaml"])
def test_env_parses_and_agrees_with_pyproject(env):
    spec = yaml.safe_load((REPO / "envs" / env).read_text())
    assert spec["name"].startswith("emogrid-")
    deps = spec["dependencies"]
    assert any(str(d).startswith("python=") for d in deps)
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    pins = pyproject_pins()
    assert pip, "no pip section"
    for line in pip:
        name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line).groups()
        assert pins.get(name.lower()) == version, f"{env}: {line} disagrees with pyproject ({pins.get(name.lower())})"


def test_rules_name_their_conda_env():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        for rule in re.findall(r"^rule (\w+):", text, flags=re.M):
            body = text.split(f"rule {rule}:", 1)[1].split("\nrule ", 1)[0]
            if "shell:" in body:
                assert "conda:" in body, f"{smk.name}: rule {rule} runs a command but names no conda env"


def test_numpy_is_pinned_to_the_installed_minor_version():
    """Seeded bootstrap draws (emogrid.results.stats) repeat only within one numpy minor version:
    the pin says which, and the environment must have it."""
    import numpy

    pin = pyproject_pins()["numpy"]
    assert re.fullmatch(r"\d+\.\d+\.\*", pin), pin
    assert numpy.__version__.startswith(pin[:-1]), (numpy.__version__, pin)
