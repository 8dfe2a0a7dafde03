"""Checks of a grid that need a model's structure, made before anything is scheduled.

`lora.targets` / `ia3.targets` are matched against the model's modules the way the trainer
matches them (`emogrid.models.adapters.resolve_targets`), on a meta-device model built from the
model's config.json (a local path or the bundled copy; never a download). A hub model whose
config is not on disk yet is skipped here and checked when it loads. Presets of a known family
are valid by construction, so the common case imports no torch.
"""

from __future__ import annotations

TARGET_SECTIONS = ("lora", "ia3")


def target_problems(cells) -> list[str]:
    """One message per (model, section, targets) that cannot resolve; [] when all can."""
    from emogrid.models.adapters import GENERIC, TARGET_PRESETS, TARGETS
    from emogrid.planning.structure import bundled_config_name, config_family, model_config_dict

    problems: list[str] = []
    seen: set = set()
    models: dict = {}
    for cell in cells:
        mspec = cell.spec["model"]
        for section in TARGET_SECTIONS:
            if section not in cell.spec:
                continue
            targets = str(cell.spec[section]["targets"])
            key = (mspec.get("name"), mspec.get("path"), mspec.get("id"), section, targets)
            if key in seen:
                continue
            seen.add(key)
            if not mspec.get("path") and not bundled_config_name(mspec):
                continue  # would need the hub: checked when the model loads
            try:
                cfg, source = model_config_dict(mspec)
            except Exception as err:  # noqa: BLE001 - an unreadable config is reported by the job
                problems.append(f"models.{mspec.get('name')}: cannot read its config.json ({err})")
                continue
            family = config_family(cfg)
            if targets in TARGET_PRESETS and family != GENERIC and targets in TARGETS.get(family, {}):
                continue  # a preset of a known family
            problem = _resolve(models, mspec, cfg, source, section, targets)
            if problem:
                problems.append(problem)
    return problems


def _resolve(models: dict, mspec: dict, cfg: dict, source: str, section: str, targets: str) -> str | None:
    from emogrid.errors import CellError
    from emogrid.models.adapters import resolve_targets
    from emogrid.planning.structure import build_meta_model

    name = mspec.get("name")
    if name not in models:
        models[name] = build_meta_model(cfg, 2)
    model, family = models[name]
    try:
        resolve_targets(model, family, targets)
    except CellError as err:
        hint = f" ({err.hint})" if err.hint else ""
        return (f"{section}.targets {targets!r} for model '{name}' ({family}, {source}): "
                f"{err.args[0]}{hint}")
    return None
