"""Tiny random models of every supported family, saved like a hub checkout.

`build_tiny_model(family, out_dir) -> Path` writes config.json, model.safetensors and a small
tokenizer (WordPiece for BERT, byte-level BPE for decoders) trained on GoEmotions text, so
tests load them through the very code path used for hub ids. Deterministic for a family.
"""

from __future__ import annotations

from pathlib import Path

FAMILIES = ("llama", "qwen2", "gpt2", "gemma3", "bert")
# Families added with datasets as an axis, and one architecture emogrid has no preset for.
NEW_FAMILIES = ("distilbert", "roberta", "deberta-v2", "modernbert", "gemma", "gemma2")
GENERIC = "albert"
ENCODERS = ("bert", "distilbert", "roberta", "deberta-v2", "modernbert", "albert")
VOCAB_SIZE = 512
_FALLBACK_TEXT = [
    "I love this so much, thank you!", "This is so sad, I am sorry for your loss.",
    "Wow, that is amazing and surprising.", "I am so angry at this stupid thing.",
    "Haha that is hilarious", "What do you mean? I am confused.", "Great job, well done!",
    "That is disgusting and gross.", "I am scared of what comes next.", "Yes, I agree with you.",
]


def data_dir() -> Path | None:
    """Real GoEmotions (original taxonomy) dir, found like every test finds it (helpers.data_dir)."""
    from helpers import data_dir as local_copy

    base = local_copy()
    if base is None:
        return None
    return base / "original" if (base / "original").is_dir() else base


def corpus(limit: int = 5000) -> list[str]:
    root = data_dir()
    path = root / "train.tsv" if root is not None else None
    if path is not None and path.is_file():
        with open(path, encoding="utf-8") as fh:
            return [line.split("\t", 1)[0] for _, line in zip(range(limit), fh)]
    return _FALLBACK_TEXT * 20


def _tokenizer(family: str):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if family in ENCODERS:
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok.train_from_iterator(corpus(), trainers.WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=special))
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
        tok.decoder = decoders.WordPiece()
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                       cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>"]
    tok.train_from_iterator(corpus(), trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=special,
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    # No pad token on purpose: decoders ship without one and the loader must add it.
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")


def _config(family: str, tok):
    import transformers as tf

    v = len(tok)
    common = dict(vocab_size=v, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=128)
    if family == "llama":
        return tf.LlamaConfig(num_key_value_heads=2, eos_token_id=tok.eos_token_id,
                              bos_token_id=tok.bos_token_id, **common), tf.LlamaForCausalLM
    if family == "qwen2":
        return tf.Qwen2Config(num_key_value_heads=2, eos_token_id=tok.eos_token_id,
                              bos_token_id=tok.bos_token_id, **common), tf.Qwen2ForCausalLM
    if family == "gemma3":
        return tf.Gemma3TextConfig(num_key_value_heads=2, head_dim=16, sliding_window=16,
                                   eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
                                   pad_token_id=None, **common), tf.Gemma3ForCausalLM
    if family == "gpt2":
        return tf.GPT2Config(vocab_size=v, n_embd=64, n_layer=2, n_head=4, n_positions=128,
                             bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id), tf.GPT2LMHeadModel
    if family == "bert":
        return tf.BertConfig(pad_token_id=tok.pad_token_id, **common), tf.BertModel
    if family == "distilbert":
        return tf.DistilBertConfig(vocab_size=v, dim=64, hidden_dim=128, n_layers=2, n_heads=4,
                                   max_position_embeddings=128, pad_token_id=tok.pad_token_id), tf.DistilBertModel
    if family == "roberta":  # positions start after the pad index: room for 2 more
        return tf.RobertaConfig(pad_token_id=tok.pad_token_id, **{**common, "max_position_embeddings": 130}), \
            tf.RobertaModel
    if family == "deberta-v2":
        return tf.DebertaV2Config(pad_token_id=tok.pad_token_id, **common), tf.DebertaV2Model
    if family == "modernbert":
        return tf.ModernBertConfig(pad_token_id=tok.pad_token_id, cls_token_id=tok.cls_token_id,
                                   sep_token_id=tok.sep_token_id, bos_token_id=tok.cls_token_id,
                                   eos_token_id=tok.sep_token_id, global_attn_every_n_layers=2,
                                   local_attention=16, **common), tf.ModernBertModel
    if family == "albert":
        return tf.AlbertConfig(pad_token_id=tok.pad_token_id, embedding_size=32, **common), tf.AlbertModel
    if family == "gemma":
        return tf.GemmaConfig(num_key_value_heads=2, head_dim=16, eos_token_id=tok.eos_token_id,
                              bos_token_id=tok.bos_token_id, pad_token_id=None, **common), tf.GemmaForCausalLM
    if family == "gemma2":
        return tf.Gemma2Config(num_key_value_heads=2, head_dim=16, sliding_window=16, eos_token_id=tok.eos_token_id,
                               bos_token_id=tok.bos_token_id, pad_token_id=None, **common), tf.Gemma2ForCausalLM
    raise ValueError(f"unknown family {family!r}; one of {FAMILIES}")


def build_tiny_model(family: str, out_dir: Path) -> Path:
    """Save a tiny random `family` model + tokenizer into out_dir (created) and return it."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = _tokenizer(family)
    config, cls = _config(family, tok)
    torch.manual_seed(0)
    model = cls(config)
    model.save_pretrained(out_dir)  # safetensors
    tok.save_pretrained(out_dir)
    return out_dir


def build_small_llama(out_dir: Path, *, hidden: int = 512, layers: int = 4, dtype: str = "float32") -> Path:
    """A Llama whose weights, not its activations, dominate a small batch (13.4M parameters at
    the defaults): for memory measurements where weight copies must show. `dtype`: the dtype
    it is saved in (bfloat16 like the hub's Llama checkpoints)."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = _tokenizer("llama")
    config, cls = _config("llama", tok)
    config.hidden_size, config.intermediate_size, config.num_hidden_layers = hidden, hidden * 11 // 4, layers
    config.num_attention_heads = config.num_key_value_heads = hidden // 64
    config.head_dim = 64
    torch.manual_seed(0)
    model = cls(config).to(getattr(torch, dtype))
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir
