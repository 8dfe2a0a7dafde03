"""Built-in models (emogrid.study.model_registry): a study names one, or defines its model itself."""

from __future__ import annotations

import pytest
import yaml

from emogrid.cli import main
from emogrid.errors import ConfigError
from emogrid.models.adapters import TARGETS
from emogrid.models.loading import FAMILIES
from emogrid.package_data import bundled_model_config, bundled_model_names
from emogrid.planning.structure import BUNDLED_CONFIGS, bundled_config_name, config_family
from emogrid.study.config import finalize
from emogrid.study.model_registry import BUILTIN_MODELS, builtin_for, resolve_models
from tests.helpers import REPO

GRID = {"labels": [2], "samples": [800], "methods": ["lora"]}


def _config(models: list[str], defined: dict | None = None) -> dict:
    return finalize({"grid": {**GRID, "models": models}, **({"models": defined} if defined else {})})


@pytest.mark.parametrize("name", sorted(BUILTIN_MODELS))
def test_every_builtin_has_a_known_family_and_its_bundled_config_agrees(name):
    entry = BUILTIN_MODELS[name]
    assert entry.family in FAMILIES and entry.family in TARGETS
    if entry.config:
        assert config_family(bundled_model_config(entry.config)) == entry.family
        assert bundled_config_name({"name": name, "id": entry.id}) == entry.config


def test_every_bundled_config_belongs_to_a_builtin():
    assert set(BUNDLED_CONFIGS) == set(bundled_model_names())
    assert set(BUNDLED_CONFIGS) == {e.config for e in BUILTIN_MODELS.values() if e.config}


def test_every_model_the_studies_name_is_builtin_or_defined_there():
    for path in [REPO / "config.yaml", *sorted((REPO / "studies").glob("*.yaml"))]:
        raw = yaml.safe_load(path.read_text())
        arms = [arm.get("models") or [] for arm in raw["grid"].get("arms") or []]
        names = [*raw["grid"].get("models", []), *(m for models in arms for m in models)]
        assert names, path
        for name in names:
            own = (raw.get("models") or {}).get(name) or {}
            assert name in BUILTIN_MODELS or own.get("id") or own.get("path") or own.get("package"), (path, name)


def test_a_builtin_needs_no_definition_and_a_study_may_override_its_keys(tmp_path):
    config = _config(["llama-3-8b", "bert-base"],
                     {"llama-3-8b": {"resources": {"mem_mb": 96000}, "train": {"lr": 1.0e-5}},
                      "bert-base": {"id": "someone/bert-finetuned"}})
    llama = config["models"]["llama-3-8b"]
    assert llama["id"] == "meta-llama/Meta-Llama-3-8B" and llama["resources"] == {"mem_mb": 96000}
    assert llama["train"] == {"lr": 1.0e-5}
    assert config["models"]["bert-base"]["id"] == "someone/bert-finetuned"  # the study's own key wins
    # a bert-base that is another checkpoint is not planned from the bundled BERT config
    assert bundled_config_name({"name": "bert-base", "id": "someone/bert-finetuned"}) is None
    assert builtin_for({"name": "x", "id": "Qwen/Qwen2.5-1.5B-Instruct"}) is BUILTIN_MODELS["qwen2.5-1.5b"]
    # finalize is applied again to the config it returned (the workflow passes it on): same result
    assert finalize(config) == config == resolve_models(config)


def test_a_model_defined_by_the_study_and_an_unknown_name():
    config = _config(["mine"], {"mine": {"id": "org/mine"}})
    assert config["models"]["mine"]["id"] == "org/mine" and "mine" not in BUILTIN_MODELS
    with pytest.raises(ConfigError) as info:
        _config(["llama-3-8", "mine"], {"mine": {"id": "org/mine"}})
    msg = str(info.value)
    assert "grid.models[0]: model 'llama-3-8' is not defined (did you mean 'llama-3-8b'?)" in msg
    assert "built-in models are " + ", ".join(BUILTIN_MODELS) in msg and "(defined: mine)" in msg


def test_grid_names_the_family_of_a_builtin_without_bundled_config_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    study = tmp_path / "s.yaml"
    study.write_text("grid: {labels: [2], samples: [800], models: [gemma-1.1-2b-it, distilbert-base],"
                     " methods: [lora]}\nlora: {targets: qv}\n")
    assert main(["grid", "--configfile", str(study)]) == 0
    err = capsys.readouterr().err
    assert "gemma-1.1-2b-it (gemma): lora.targets qv = q_proj, v_proj" in err
    assert "distilbert-base (distilbert): lora.targets qv = q_lin, v_lin" in err
