"""The published studies' recipe for one cell, written as their scripts are: the reference side
of the benchmark (bench/run.py). Deliberately *not* optimised and independent of emogrid's code.

    python bench/baseline.py --spec JSON_or_@file --data SUBSET_DIR --out RUN_DIR

What it does, as the papers' notebooks/scripts do:

* reads the subset's train/val/test.jsonl (the very files emogrid reads), builds
  `datasets.Dataset`s and tokenises them *inside the script, every run*, with
  `padding="max_length"` (max_length from the spec, 128) and truncation;
* `AutoModelForSequenceClassification` from the same model directory, the same seed set first
  (head + adapter initialised from it), pad token = eos for decoders;
* LoRA-family methods through peft's `LoraConfig(task_type=SEQ_CLS, ...)` with the spec's
  r / alpha / dropout and the same target modules; `full` trains every weight;
* HF `Trainer` with the spec's batch size, lr, scheduler, epochs, weight decay, max grad norm,
  warm-up; fp32 on CPU (bf16 on a GPU when the spec asks for it); evaluation and a checkpoint
  every epoch (`eval_strategy="epoch"`, `save_strategy="epoch"`), best model by accuracy
  loaded at the end; everything else default: eval batch size 8, default dataloader, default
  optimizer, logging every 500 steps, progress bars on (they go to stderr);
* early stopping: `EarlyStoppingCallback(patience)` from the spec, exactly as emogrid's cell;
  the benchmark sets patience >= epochs on both sides so that both run the same number of
  optimizer steps;
* predicts the test split once at the end (eval batch size 8) and writes
  RUN_DIR/metrics.json (`test.accuracy`, `test.f1_macro`, `val.accuracy`, optimizer steps).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from peft import LoraConfig, TaskType, get_peft_model
from sklearn.metrics import accuracy_score, f1_score
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    EarlyStoppingCallback,
    Trainer,
    TrainingArguments,
    set_seed,
)

# The module names the studies target (LoRA "attention" vs "all linear layers"), per family.
TARGETS = {
    "bert": {"attention": ["query", "key", "value", "attention.output.dense"],
             "all-linear": ["query", "key", "value", "attention.output.dense", "intermediate.dense",
                            "output.dense"]},
    "llama": {"attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
              "all-linear": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]},
}
TARGETS["qwen2"] = TARGETS["gemma3_text"] = TARGETS["llama"]
TARGETS["gpt2"] = {"attention": ["c_attn", "attn.c_proj"],
                   "all-linear": ["c_attn", "attn.c_proj", "c_fc", "mlp.c_proj"]}


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    spec = json.loads(Path(args.spec[1:]).read_text() if args.spec.startswith("@") else args.spec)
    data_dir, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_cfg, method = spec["train"], spec["method"]
    seed = int(spec["cell"]["seed"])
    model_dir = spec["model"]["path"] or spec["model"]["id"]

    labels = json.loads((data_dir / "manifest.json").read_text())["labels"]
    splits = {s: read_jsonl(data_dir / f"{s}.jsonl") for s in ("train", "val", "test")}

    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    def tokenize(batch):
        return tokenizer(batch["text"], padding="max_length", truncation=True,
                         max_length=int(train_cfg.get("max_length", 128)))

    ds = {}
    for name, rows in splits.items():
        d = Dataset.from_dict({"text": [r["text"] for r in rows], "label": [r["labels"][0] for r in rows]})
        ds[name] = d.map(tokenize, batched=True)

    quantized = method.get("quantize", "none") not in (None, "none")
    kwargs = {}
    if quantized:  # QLoRA as the papers run it: NF4 + double quant, bf16 compute, k-bit prep
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["device_map"] = {"": 0}
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={n: i for i, n in enumerate(labels)}, **kwargs)
    if quantized:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if method.get("peft", "full") == "lora":
        lora = spec["lora"]
        family = model.config.model_type
        targets = lora.get("targets", "attention")
        targets = TARGETS[family][targets] if targets in ("attention", "all-linear") else targets.split(",")
        # The head trains in full, as in emogrid's cell: BERT's pooler + classifier, a decoder's score.
        head = ["classifier", "pooler"] if family == "bert" else ["score"]
        config = LoraConfig(task_type=TaskType.SEQ_CLS, r=int(lora["r"]), lora_alpha=float(lora["alpha"]),
                            lora_dropout=float(lora["dropout"]), target_modules=targets,
                            use_dora=bool(method.get("use_dora")), modules_to_save=head)
        model = get_peft_model(model, config)
    elif method.get("peft", "full") != "full":
        raise SystemExit(f"baseline: method {method.get('peft')!r} is not part of the benchmark")

    def compute_metrics(eval_pred):
        logits, gold = eval_pred
        pred = np.argmax(logits, axis=-1)
        return {"accuracy": accuracy_score(gold, pred), "f1_macro": f1_score(gold, pred, average="macro")}

    precision = train_cfg.get("precision", "fp32")
    cuda = torch.cuda.is_available()
    targs = TrainingArguments(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=int(train_cfg["batch_size"]),
        gradient_accumulation_steps=int(train_cfg.get("grad_accum", 1)),
        learning_rate=float(train_cfg["lr"]),
        lr_scheduler_type=train_cfg.get("scheduler", "linear"),
        warmup_steps=float(train_cfg.get("warmup_ratio", 0.0)),
        weight_decay=float(train_cfg.get("weight_decay", 0.0)),
        max_grad_norm=float(train_cfg.get("max_grad_norm", 1.0)),
        num_train_epochs=float(train_cfg["epochs"]),
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        seed=seed,
        bf16=cuda and precision in ("bf16", "auto"),
        **({"optim": "paged_adamw_8bit"} if quantized else {}),
        use_cpu=not cuda,
        report_to="none",
    )
    trainer = Trainer(model=model, args=targs, train_dataset=ds["train"], eval_dataset=ds["val"],
                      compute_metrics=compute_metrics,
                      callbacks=[EarlyStoppingCallback(early_stopping_patience=int(train_cfg.get("patience", 2)))])
    t0 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    val = trainer.evaluate(ds["val"])
    test = trainer.predict(ds["test"])
    eval_seconds = time.perf_counter() - t0
    pred = np.argmax(test.predictions, axis=-1)
    gold = np.array(ds["test"]["label"])
    metrics = {
        "cell_id": spec.get("cell_id"), "side": "baseline", "status": "ok",
        "val": {"accuracy": float(val["eval_accuracy"]), "f1_macro": float(val["eval_f1_macro"])},
        "test": {"accuracy": float(accuracy_score(gold, pred)),
                 "f1_macro": float(f1_score(gold, pred, average="macro")), "n": int(len(gold))},
        "efficiency": {"optimizer_steps": int(trainer.state.global_step), "train_seconds": round(train_seconds, 3),
                       "eval_seconds": round(eval_seconds, 3), "epochs_run": float(trainer.state.epoch or 0),
                       "batch_size": int(train_cfg["batch_size"]), "optim": str(targs.optim),
                       "eval_batch_size": int(targs.per_device_eval_batch_size)},
    }
    tmp = out / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=1))
    os.replace(tmp, out / "metrics.json")


if __name__ == "__main__":
    main()
