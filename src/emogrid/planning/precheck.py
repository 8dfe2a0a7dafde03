"""Checks of a grid made before anything is scheduled: its cells' batches against their GPU
counts (`gpu_batch_problems`), and what needs a model's structure (`target_problems`).

`lora.targets` / `ia3.targets` are matched against the model's modules the way the trainer
matches them (`emogrid.models.adapters.resolve_targets`), on a meta-device model built from the
model's config.json (a local path or the bundled copy; never a download); a name that matches no
module gets a did-you-mean from the family's presets and the model's linear module names. A hub model whose
config is not on disk yet is skipped here and checked when it loads. Presets of a known family
are valid by construction, so the common case imports no torch.
"""

from __future__ import annotations

from emogrid.study.spec_sections import TrainRecipe

TARGET_SECTIONS = ("lora", "ia3")
LINEAR_TYPES = ("Linear", "Conv1D", "Linear4bit", "Linear8bitLt")  # module classes an adapter can target


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
        hint = target_suggestions(model, family, targets) or (f" ({err.hint})" if err.hint else "")
        return (f"{section}.targets {targets!r} for model '{name}' ({family}, {source}): "
                f"{err.args[0]}{hint}")
    return None


def target_suggestions(model, family: str, targets: str) -> str:
    """' (did you mean ...?); ...' for a target list that names no module: the closest of the
    family's presets and the model's linear module names (what LoRA and IA3 adapt), then both lists."""
    import difflib

    from emogrid.models.adapters import TARGETS

    presets = list(TARGETS.get(family, {}))
    linear = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                     if name and not list(module.children()) and type(module).__name__ in LINEAR_TYPES})
    candidates = presets + linear
    guesses = []
    for wanted in [t.strip() for t in str(targets).split(",") if t.strip()]:
        if any(n == wanted or n.endswith("." + wanted) for n, _ in model.named_modules()):
            guesses.append(wanted)  # this one exists: keep it in the suggested list
            continue
        close = difflib.get_close_matches(wanted, candidates, n=1, cutoff=0.6)
        guesses.append(close[0] if close else None)
    found = [g for g in guesses if g]
    mean = ""
    if found and None not in guesses:
        mean = f" (did you mean {','.join(dict.fromkeys(found))!r}?)"
    where = (f"presets for {family}: {', '.join(presets)}; " if presets else "") + \
        f"its linear modules: {', '.join(linear) or 'none found'}"
    return f"{mean}; {where}"


def gpu_batch_problems(config, cells) -> list[str]:
    """One message per (model, batch size, GPU count) whose train.batch_size cannot be split
    evenly over the cell's GPUs (resources `gpu: N` / a gres count; each of the N processes
    trains batch/N, the recipe of one GPU). Found before scheduling, not after the data is
    prepared and N processes were launched."""
    from emogrid.scheduling.resources import gpus_of, train_resources, validate_resources

    problems: list[str] = []
    seen: set = set()
    for cell in cells:
        res = train_resources(config, cell)
        n = gpus_of(res)
        batch = TrainRecipe.from_spec(cell.spec).batch_size
        model = cell.axes["model"]
        if n <= 1 or batch % n == 0 or (model, batch, n) in seen:
            continue
        seen.add((model, batch, n))
        own = validate_resources(((config.get("models") or {}).get(model) or {}).get("resources"),
                                 f"models.{model}.resources")
        key = "gres" if "gres" in res else "gpu"
        where = f"models.{model}.resources.{key}" if key in own else f"resources.train.{key}"
        problems.append(f"train.batch_size {batch} (model {model}) cannot be split evenly over the {n} GPUs of "
                        f"{where} ({res[key]}): each GPU trains batch_size / {n}; use a batch_size that is a "
                        f"multiple of {n}, or another GPU count")
    return problems
