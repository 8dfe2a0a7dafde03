"""Registry of fine-tuning methods: small declarative entries, no heavy imports.

A method says which adapter family it uses (`peft`), whether the base model is quantised,
and which config sections it reads. The grid uses `sections` to drop swept parameters a
method ignores (sweeping `lora.r` does not multiply the `full` cells), and the trainer
(`emogrid.models.adapters`) turns the entry plus those sections into a peft config.

Two baselines train no adapter: `head` (a linear probe: only the classification head trains)
and `untrained` (the pretrained model with a freshly initialised head, evaluated without a
single optimizer step: the floor every method must beat).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# what trains: full = every weight; lora | ia3 | adalora = adapters + the head; head = the head
# only; none = nothing (evaluated as loaded)
PEFT_KINDS = ("full", "lora", "ia3", "adalora", "head", "none")
# the train keys an untrained cell's evaluation reads (the rest only shape training): sweeping
# any other train key does not multiply its cells
EVAL_TRAIN_KEYS = ("max_length", "precision", "eval_batch_size")


def trains(peft: str) -> bool:
    """Whether a method of this kind runs optimizer steps (`none` is evaluated as loaded)."""
    return peft != "none"


@dataclass(frozen=True)
class Method:
    peft: str  # one of PEFT_KINDS
    quantize: str = "none"  # none | nf4 | int8
    use_dora: bool = False
    loraplus_ratio: float | None = None  # LoRA+: lr of B = ratio * lr of A
    optim: str | None = None  # overrides train.optim when set (QLoRA: 8-bit AdamW)
    description: str = ""
    sections: tuple[str, ...] = field(default=())

    def to_spec(self, name: str) -> dict:
        spec = {"name": name, **asdict(self)}
        spec.pop("sections")
        spec.pop("description")
        spec.pop("optim")
        return spec


def config_sections(peft: str, quantize: str, loraplus: bool = False) -> tuple[str, ...]:
    sections = ["train"]
    if peft in ("lora", "adalora"):
        sections.append("lora")
    if peft in ("ia3", "adalora"):
        sections.append(peft)
    if quantize != "none":
        sections.append("quant")
    if loraplus:
        sections.append("loraplus")
    return tuple(sections)


def make_method(peft: str, quantize: str = "none", *, use_dora: bool = False,
                loraplus: bool = False, optim: str | None = None, description: str = "") -> Method:
    return Method(peft=peft, quantize=quantize, use_dora=use_dora,
                  loraplus_ratio=None, optim=optim, description=description,
                  sections=config_sections(peft, quantize, loraplus))


BUILTIN_METHODS: dict[str, Method] = {
    "full": make_method("full", description="full fine-tuning: every weight trains"),
    "lora": make_method("lora", description="LoRA adapters on the target modules"),
    "qlora": make_method("lora", "nf4", optim="adamw_8bit",
                         description="4-bit NF4 base model + LoRA, 8-bit AdamW"),
    "ia3": make_method("ia3", description="IA3: learned rescaling vectors"),
    "loraplus": make_method("lora", loraplus=True,
                            description="LoRA+: B matrices learn `loraplus.ratio` x faster"),
    "dora": make_method("lora", use_dora=True, description="DoRA: weight-decomposed LoRA"),
    "adalora": make_method("adalora", description="AdaLoRA: adaptive rank budget"),
    "head": make_method("head", description="linear probe: only the classification head trains"),
    "untrained": make_method("none", description="the pretrained model with a freshly initialised head, "
                                                 "evaluated without training: the floor to beat"),
}


def method_spec(name: str, method: Method, sections: dict) -> dict:
    """The `method` block of a cell spec (LoRA+ ratio resolved from its section)."""
    spec = method.to_spec(name)
    if "loraplus" in method.sections:
        spec["loraplus_ratio"] = float(sections["loraplus"]["ratio"])
    return spec
