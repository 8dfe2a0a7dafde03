"""Built-in dataset definitions and the resolution of `grid.datasets` names.

`resolve_dataset` gives a `DatasetDefinition` (emogrid.study.dataset_definition: typed, with
every default filled); its JSON (`as_json()`) travels to `emogrid prepare` and is part of the
data rule's parameters, so editing one dataset reruns only that dataset's subsets:

* kind ``goemotions``: the GoEmotions directory layout (``train.tsv dev.tsv test.tsv
  labels.txt``, headerless) or its hub copy; keys ``path``, ``hub``, ``taxonomy``.
  ``EMOGRID_DATA_DIR`` still wins over ``path``.
* kind ``table``: any text-classification table, from the hub (``hub: {id, config,
  revision}``) or local files (``path:`` a file or a directory of split files; csv, tsv,
  jsonl/json, parquet; ``header: false`` + ``columns: [...]`` for headerless files), with
  ``text``, ``label`` or ``label_columns``, ``label_names``, ``id`` and ``splits``.

Every kind shares the subset settings ``mode labels val_fraction val_from transforms draw
test threshold exclude_labels test_fraction carve_seed``; those a definition leaves out come from
the config's ``data:`` section, so the settings written there apply to every dataset.
"""

from __future__ import annotations

import copy

from emogrid.errors import ConfigError
from emogrid.study.dataset_definition import CARVE_DEFAULTS, DEFAULT_HUB, DEFAULT_SPLITS, DatasetDefinition
from emogrid.study.merge import deep_merge
from emogrid.study.schema import schema_default

# Subset settings added after subsets existed: a definition holds one only when it differs from
# its schema default (the value that reproduces those subsets), since the data rule reruns on a
# changed definition.
LATER_SETTINGS = ("val_from", "transforms", "draw")
_GOEMOTIONS_HUB = {**DEFAULT_HUB, "revision": None}

# Facts below are from each dataset's card on the Hugging Face hub (dataset_info: config
# name, split names and sizes, features, ClassLabel names), read 2026-12 via the docs search.
BUILTINS: dict[str, dict] = {
    # huggingface.co/datasets/google-research-datasets/go_emotions: config `simplified`,
    # splits train/validation/test, columns text, labels (list of ClassLabel, 28 names), id.
    # The Ekman grouping is the GoEmotions repository's ekman_mapping.json (emogrid.study.taxonomies).
    "goemotions": {"kind": "goemotions", "hub": _GOEMOTIONS_HUB, "path": None,
                   "taxonomy": "original", "exclude_labels": ["neutral"]},
    "goemotions-ekman": {"kind": "goemotions", "hub": _GOEMOTIONS_HUB, "path": None,
                         "taxonomy": "ekman", "exclude_labels": ["neutral"]},
    # huggingface.co/datasets/stanfordnlp/imdb: config `plain_text`; splits train (25k),
    # test (25k), unsupervised (50k, unlabelled: never read); label ClassLabel [neg, pos].
    "imdb": {"kind": "table", "hub": {"id": "stanfordnlp/imdb", "config": "plain_text", "revision": None},
             "text": "text", "label": "label", "splits": {"train": "train", "val": None, "test": "test"}},
    # huggingface.co/datasets/fancyzhx/ag_news: default config; splits train (120k), test
    # (7.6k); label ClassLabel [World, Sports, Business, Sci/Tech].
    "ag_news": {"kind": "table", "hub": {"id": "fancyzhx/ag_news", "config": None, "revision": None},
                "text": "text", "label": "label", "splits": {"train": "train", "val": None, "test": "test"}},
    # huggingface.co/datasets/dair-ai/emotion: config `split` (16k/2k/2k); splits train,
    # validation, test; label ClassLabel [sadness, joy, love, anger, fear, surprise].
    "emotion": {"kind": "table", "hub": {"id": "dair-ai/emotion", "config": "split", "revision": None},
                "text": "text", "label": "label"},
    # huggingface.co/datasets/SemEvalWorkshop/sem_eval_2018_task_1: config
    # `subtask5.english` (E-c); splits train (6838), validation (886), test (3259); columns
    # ID, Tweet and 11 bool emotion columns. The hub copy is a loading script, which
    # `datasets` >= 4 no longer runs: point `path:` at the task's files
    # (2018-E-c-En-{train,dev,test}.txt: tab-separated, header ID Tweet anger ... trust,
    # 0/1 columns) and map `splits:` to their names, as studies/vinayaka_emotion_multilabel.yaml shows.
    "sem_eval_2018_ec": {
        "kind": "table",
        "hub": {"id": "SemEvalWorkshop/sem_eval_2018_task_1", "config": "subtask5.english", "revision": None},
        "text": "Tweet", "id": "ID",
        "label_columns": ["anger", "anticipation", "disgust", "fear", "joy", "love", "optimism",
                          "pessimism", "sadness", "surprise", "trust"],
    },
    # huggingface.co/datasets/Yelp/yelp_review_full: config `yelp_review_full`; splits train
    # (650k), test (50k); label ClassLabel ["1 star", "2 star", "3 stars", "4 stars", "5 stars"].
    "yelp_review_full": {"kind": "table",
                         "hub": {"id": "Yelp/yelp_review_full", "config": "yelp_review_full", "revision": None},
                         "text": "text", "label": "label",
                         "splits": {"train": "train", "val": None, "test": "test"}},
}


def grid_datasets(config: dict) -> list[str]:
    """`grid.datasets`, defaulting to the legacy `data.name` (goemotions)."""
    names = config.get("grid", {}).get("datasets")
    return list(names) if names else [config.get("data", {}).get("name") or schema_default("data.name")]


def resolve_dataset(name: str, config: dict) -> DatasetDefinition:
    """The complete definition of dataset `name` (see the module docstring); ConfigError if unknown."""
    return DatasetDefinition.from_json(_definition_json(name, config))


def _definition_json(name: str, config: dict) -> dict:
    """The definition as the data rule's JSON: built-in, `data:` and `datasets:` merged; the settings
    added after subsets existed (LATER_SETTINGS) only where they differ from their defaults."""
    data = config.get("data", {})
    user = (config.get("datasets") or {}).get(name)
    legacy = name == (data.get("name") or schema_default("data.name"))
    if user is None and name not in BUILTINS and not legacy:
        raise ConfigError(
            f"dataset '{name}' is not defined: built-in datasets are {', '.join(sorted(BUILTINS))}; "
            f"define others under datasets: (defined: {', '.join(sorted(config.get('datasets') or {})) or 'none'})")
    defn = copy.deepcopy(BUILTINS.get(name, {}))
    base = (user or {}).get("builtin")
    if base is not None:
        if base not in BUILTINS:
            raise ConfigError(f"datasets.{name}.builtin: unknown built-in '{base}'; expected one of "
                              f"{', '.join(sorted(BUILTINS))}")
        defn = copy.deepcopy(BUILTINS[base])
    if legacy and not user and defn.get("kind", "goemotions") == "goemotions":
        # the `data:` section's GoEmotions keys (every study written before `datasets:`)
        defn = deep_merge(BUILTINS["goemotions"], defn)
        if name not in BUILTINS or name == "goemotions":  # goemotions-ekman is Ekman by name
            defn["taxonomy"] = data.get("taxonomy") or defn.get("taxonomy") or schema_default("data.taxonomy")
    if defn.get("kind") == "goemotions":
        if data.get("path") and not (user or {}).get("path"):
            defn["path"] = data["path"]
        if data.get("hub"):
            defn["hub"] = {**defn.get("hub", {}), **data["hub"]}
    if user:
        defn = deep_merge(defn, {k: v for k, v in user.items() if k != "builtin"})
    if "kind" not in defn:
        defn["kind"] = "table"
    if defn["kind"] == "goemotions":
        defn.setdefault("taxonomy", schema_default("data.taxonomy"))
        defn.setdefault("exclude_labels", ["neutral"])
        defn["hub"] = {**_GOEMOTIONS_HUB, **(defn.get("hub") or {})}
    else:
        defn["splits"] = {**DEFAULT_SPLITS, **(defn.get("splits") or {})}
        for key, value in CARVE_DEFAULTS.items():
            defn.setdefault(key, value)
        defn.setdefault("exclude_labels", [])
    defn["name"] = name
    for key in ("mode", "val_fraction", "test", "threshold", *LATER_SETTINGS):
        if defn.get(key) is None:
            defn[key] = copy.deepcopy(data.get(key))
    for key in LATER_SETTINGS:
        if defn.get(key) in (None, schema_default(f"data.{key}")):
            defn.pop(key, None)  # at its default: absent, so a subset prepared before the key existed stays as it is
    if "labels" not in (user or {}):
        # data.labels names GoEmotions labels: it applies to the dataset data: describes
        defn["labels"] = copy.deepcopy(data.get("labels")) if legacy else None
    return defn


# Label counts of the hub built-ins (from the same cards), so `grid.labels` and `all` are
# checked before any job starts.
BUILTIN_LABEL_NAMES = {
    "imdb": ["neg", "pos"],
    "ag_news": ["World", "Sports", "Business", "Sci/Tech"],
    "emotion": ["sadness", "joy", "love", "anger", "fear", "surprise"],
    "yelp_review_full": ["1 star", "2 star", "3 stars", "4 stars", "5 stars"],
}


def label_names_for(defn: DatasetDefinition) -> list[str] | None:
    """Label names known before the data is read: the definition's own, else a hub built-in's card."""
    names = defn.known_label_names()
    if names is None and defn.kind == "table" and defn.hub and not defn.path and defn.name in BUILTIN_LABEL_NAMES:
        if defn.hub.id == BUILTINS[defn.name]["hub"]["id"]:
            return list(BUILTIN_LABEL_NAMES[defn.name])
    return names
