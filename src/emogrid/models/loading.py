"""Load a tokenizer + sequence-classification model for a cell, by hub id or local directory.

A hub id is first resolved to a local snapshot (safetensors and configs only), so both ways
in share one code path. Heavy imports (torch, transformers) happen inside functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emogrid.errors import CellError
from emogrid.study.spec_sections import MethodSpec, TrainRecipe

DECODER_FAMILIES = ("llama", "qwen2", "gpt2", "gemma3", "gemma", "gemma2")
ENCODER_FAMILIES = ("bert", "distilbert", "roberta", "deberta-v2", "modernbert")
FAMILIES = DECODER_FAMILIES + ENCODER_FAMILIES
GENERIC = "generic"  # any other architecture: AutoModelForSequenceClassification, explicit targets

# config.model_type -> family (module names, head and target presets are per family).
_MODEL_TYPES = {
    "llama": "llama",
    "qwen2": "qwen2",
    "gpt2": "gpt2",
    "gemma3_text": "gemma3",
    "gemma3": "gemma3",
    "gemma": "gemma",  # Gemma 1 / 1.1
    "gemma2": "gemma2",
    "bert": "bert",
    "electra": "bert",
    "distilbert": "distilbert",
    "roberta": "roberta",
    "xlm-roberta": "roberta",
    "camembert": "roberta",
    "deberta-v2": "deberta-v2",  # DeBERTa v2 and v3 (v3 checkpoints say deberta-v2)
    "modernbert": "modernbert",
}

# Modules that form the classification head: kept out of quantisation, trained in full.
# The BERT pooler is part of the head: a frozen pooler makes LoRA barely learn many labels.
# DistilBERT: pre_classifier + classifier; RoBERTa: classifier (dense + out_proj, no pooler);
# DeBERTa-v2: ContextPooler + classifier; ModernBERT: prediction head + classifier.
HEAD_MODULES = {"bert": ("classifier", "pooler"), "distilbert": ("pre_classifier", "classifier"),
                "roberta": ("classifier",), "deberta-v2": ("pooler", "classifier"),
                "modernbert": ("head", "classifier"), GENERIC: ("classifier", "score")}
_DECODER_HEAD = ("score",)

# Only these files are fetched from the hub: no pickled weights, ever.
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja"]


def detect_family(model_type: str) -> str:
    """The family of a `config.model_type`; GENERIC for any other architecture.

    A GENERIC model loads through AutoModelForSequenceClassification and needs its target
    modules named explicitly (`resolve_targets` says so, listing the known families).
    """
    return _MODEL_TYPES.get(model_type, GENERIC)


def known_model_types() -> list[str]:
    return sorted(_MODEL_TYPES)


def head_modules(family: str) -> tuple[str, ...]:
    return HEAD_MODULES.get(family, _DECODER_HEAD)


def model_dir(model_spec: dict) -> Path:
    """Local directory of the model: `path` wins over `id`; a hub id becomes a cached snapshot."""
    path = model_spec.get("path")
    if path:
        path = Path(path).expanduser()
        if not (path / "config.json").is_file():
            raise CellError(f"model path {str(path)!r} has no config.json",
                            hint="set models.<name>.path to a directory saved with save_pretrained")
        return path
    model_id = model_spec.get("id")
    if not model_id:
        raise CellError("model spec has neither `path` nor `id`", hint="set models.<name>.id or .path")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model_id, revision=model_spec.get("revision"),
                                      allow_patterns=_HUB_PATTERNS))
    except Exception as err:  # offline, gated, typo: all need the user
        raise CellError(f"could not fetch model {model_id!r}: {type(err).__name__}: {err}",
                        hint="check the hub id and your login, or download it and set models.<name>.path") from err


def load_model_config(model_spec: dict):
    """The model's transformers config (from `model_dir`); CellError naming the folder."""
    from transformers import AutoConfig

    src = model_dir(model_spec)
    try:
        return AutoConfig.from_pretrained(src, trust_remote_code=bool(model_spec.get("trust_remote_code")))
    except Exception as err:
        raise CellError(f"could not read the model config in {src}: {err}",
                        hint="set trust_remote_code: true only if you trust this model's code") from err


def load_tokenizer(src: Path, family: str, trust_remote_code: bool = False):
    """The tokenizer saved with the model.

    `AutoTokenizer` picks a class from config.model_type (qwen2 -> Qwen2Tokenizer) that may not
    match the saved tokenizer.json, so the saved file is loaded directly when it exists.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if (Path(src) / "tokenizer.json").is_file():
        tok = PreTrainedTokenizerFast.from_pretrained(src)
    else:
        tok = AutoTokenizer.from_pretrained(src, trust_remote_code=trust_remote_code)
    if (family in DECODER_FAMILIES or family == GENERIC) and tok.pad_token is None:
        # Decoders ship without a pad token; eos (or unk) is safe because the model reads the
        # last non-pad position and inputs carry no trailing eos.
        tok.pad_token = tok.eos_token or tok.unk_token
        if tok.pad_token is None:
            raise CellError(f"tokenizer in {src} has no pad, eos or unk token to pad with")
    tok.padding_side = "right"
    return tok


def compute_dtype(quant_spec: dict):
    """torch dtype of a quantised model's matmuls, from the spec's `quant` section."""
    import torch

    name = quant_spec["compute_dtype"]
    if name == "auto":
        return torch.bfloat16 if bf16_supported() else torch.float32
    return {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
            "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}[name]


def base_weights_dtype(spec: dict, *, cuda: bool | None = None) -> str:
    """Dtype the unquantised base is loaded in: "bf16" or "fp32".

    Weights that train stay fp32 (master weights; AdamW updates of ~lr*1e-3 vanish in bf16
    rounding), so full fine-tuning loads fp32 and bf16 autocast does the speed-up. A frozen
    base under LoRA & co. may be bf16 on a bf16 device: half the memory, same result.
    Transformers 5 would otherwise load the checkpoint's dtype (bf16 for Llama/Qwen/Gemma),
    even on a CPU.
    """
    want = TrainRecipe.from_spec(spec).precision
    bf16 = want == "bf16" or (want == "auto" and (bf16_supported() if cuda is None else cuda))
    frozen_base = MethodSpec.from_spec(spec).peft != "full"
    return "bf16" if bf16 and frozen_base else "fp32"


def upcast_trainable(model) -> None:
    """Trainable tensors in fp32 (a copied bf16 head under modules_to_save, for one)."""
    import torch

    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.bfloat16, torch.float16):
            param.data = param.data.float()


def bf16_supported() -> bool:
    """Native bf16 only (Ampere+): emulated bf16 on a V100/T4 is slower than fp32."""
    from emogrid.models.devices import bf16_native

    return bf16_native()


def quantization_config(method: MethodSpec, quant: dict | None, family: str):
    """BitsAndBytesConfig for nf4/int8, with the head kept in full precision (None if unquantised).
    `quant` is the spec's `quant` section: None exactly when the method is unquantised."""
    kind = method.quantize
    if kind == "none":
        return None
    from transformers import BitsAndBytesConfig

    # Matched against Linear names (prefix or suffix): "pooler" alone misses "bert.pooler.dense".
    skip = [f"{m}.dense" if m == "pooler" else m for m in head_modules(family)]
    if kind == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_use_double_quant=bool(quant["double_quant"]),
                                  bnb_4bit_compute_dtype=compute_dtype(quant),
                                  llm_int8_skip_modules=skip)
    if kind == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    raise CellError(f"method.quantize {kind!r} is not one of none, nf4, int8")


def _model_class(config, family: str):
    from transformers import AutoModelForSequenceClassification

    if family == "gemma3":
        # Text-only Gemma 3 head, never the multimodal Gemma3ForSequenceClassification.
        from transformers import Gemma3TextForSequenceClassification

        return Gemma3TextForSequenceClassification
    return AutoModelForSequenceClassification


def classification_config(model_spec: dict, num_labels: int, multi_label: bool, labels: list[str] | None = None):
    config = load_model_config(model_spec)
    family = detect_family(config.model_type)
    if config.model_type == "gemma3":  # multimodal checkpoint: classify with its text tower
        config = config.get_text_config()
    config.num_labels = num_labels
    if labels:
        config.id2label = dict(enumerate(labels))
        config.label2id = {name: i for i, name in enumerate(labels)}
    config.problem_type = "multi_label_classification" if multi_label else "single_label_classification"
    # Classification never generates: a KV cache in eval only costs memory (GBs at batch 64).
    if hasattr(config, "use_cache"):
        config.use_cache = False
    return config, family


def load_model(spec: dict, num_labels: int, *, multi_label: bool = False,
               labels: list[str] | None = None, device_map: Any = None, on_meta: bool = False):
    """(model, tokenizer, family) for a cell spec. The head is randomly initialised (seed first).

    `on_meta`: build the model's parameters on the meta device without reading the weights
    (FSDP ranks other than 0: rank 0 broadcasts its weights when the model is sharded, so a
    node holds one host copy of the model instead of one per GPU). Buffers stay real: the ones
    that are not saved (rotary frequencies) are computed here and never broadcast."""
    model_spec = spec["model"]
    trust = bool(model_spec.get("trust_remote_code"))
    src = model_dir(model_spec)
    config, family = classification_config(model_spec, num_labels, multi_label, labels)
    tokenizer = load_tokenizer(src, family, trust)
    if family in DECODER_FAMILIES or (family == GENERIC and getattr(config, "pad_token_id", None) is None):
        config.pad_token_id = tokenizer.pad_token_id
    quant = spec.get("quant")  # optional by design: only quantised methods' specs have the section
    qconfig = quantization_config(MethodSpec.from_spec(spec), quant, family)
    kwargs: dict[str, Any] = {"config": config, "trust_remote_code": trust, "use_safetensors": True}
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
        kwargs["device_map"] = device_map if device_map is not None else _default_device_map()
        kwargs["dtype"] = compute_dtype(quant)
    else:
        import torch

        kwargs["dtype"] = {"bf16": torch.bfloat16, "fp32": torch.float32}[base_weights_dtype(spec)]
    try:
        if on_meta and qconfig is None:
            from accelerate import init_empty_weights

            with init_empty_weights(include_buffers=False):
                model = _model_class(config, family).from_config(config, dtype=kwargs["dtype"],
                                                                 trust_remote_code=trust)
        else:
            model = _model_class(config, family).from_pretrained(src, **kwargs)
    except (OSError, ValueError) as err:
        raise CellError(f"could not load model weights from {src}: {err}",
                        hint="the directory needs *.safetensors weights (pickled .bin files are not loaded)") from err
    if family in DECODER_FAMILIES:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer, family


def _default_device_map():
    # under torchrun each process loads its quantised copy on its own GPU
    import os

    import torch

    return {"": int(os.environ.get("LOCAL_RANK", "0"))} if torch.cuda.is_available() else {"": "cpu"}
