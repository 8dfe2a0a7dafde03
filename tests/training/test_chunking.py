"""Training batches forwarded as length-sorted chunks (emogrid.training.chunking): less padding, same loss
and gradient as the whole batch, through CellTrainer.compute_loss."""

from __future__ import annotations

import pytest
import torch

from emogrid.training.chunking import split_by_length

PAD = 0


def batch(lengths, width=None, left=False, labels=None, vocab=50):
    width = width or max(lengths)
    g = torch.Generator().manual_seed(0)
    ids = torch.full((len(lengths), width), PAD)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for row, n in enumerate(lengths):
        cols = slice(width - n, width) if left else slice(0, n)
        ids[row, cols] = torch.randint(1, vocab, (n,), generator=g)
        mask[row, cols] = 1
    labels = torch.tensor(labels if labels is not None else [i % 3 for i in range(len(lengths))])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


LENGTHS = [30, 4, 7, 25, 5, 6, 12, 3, 9, 40, 8, 5, 6, 11, 4, 10, 13, 2]  # 18 rows: chunks of 5, 5, 4, 4


@pytest.mark.parametrize("left", [False, True], ids=["right-padded", "left-padded"])
def test_chunks_cover_every_row_once_and_trim_padding(left):
    inputs = batch(LENGTHS, left=left)
    parts = split_by_length(inputs, 4)
    assert len(parts) == 4
    rows = sorted(tuple(r.tolist()) for p in parts for r in p["input_ids"][p["attention_mask"].bool()].split(
        p["attention_mask"].sum(1).tolist()))
    whole = sorted(tuple(r.tolist()) for r in inputs["input_ids"][inputs["attention_mask"].bool()].split(
        inputs["attention_mask"].sum(1).tolist()))
    assert rows == whole
    for p in parts:  # each chunk is exactly as wide as its longest row, labels travel with rows
        assert p["input_ids"].shape == p["attention_mask"].shape
        assert p["input_ids"].shape[1] == int(p["attention_mask"].sum(1).max())
        assert len(p["labels"]) == len(p["input_ids"])
    fed = sum(p["input_ids"].numel() for p in parts)
    assert fed < 0.5 * inputs["input_ids"].numel()


def test_small_batches_and_batches_without_mask_stay_whole():
    assert len(split_by_length(batch([3, 9, 4, 5, 6, 7, 2]), 4)) == 1  # 7 rows: one chunk of >= 4 only
    assert len(split_by_length(batch([3, 9, 4, 5, 6, 7, 2, 8]), 4)) == 2
    no_mask = {"input_ids": torch.ones(16, 5, dtype=torch.long)}
    assert split_by_length(no_mask, 4) == [no_mask]


def _bert():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                     num_labels=3, pad_token_id=PAD)
    return BertForSequenceClassification(cfg), False


def _llama():
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=1, intermediate_size=64, num_labels=3, pad_token_id=PAD)
    return LlamaForSequenceClassification(cfg), True  # decoders: emogrid pads them on the left


def _trainer(model, tmp_path, chunks):
    from transformers import TrainingArguments

    from emogrid.training.trainer import CellTrainer

    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none",
                             remove_unused_columns=False, per_device_train_batch_size=16)
    trainer = CellTrainer(model=model, args=args, length_chunks=chunks)
    return trainer


def _loss_and_grads(trainer, model, inputs):
    model.train()
    model.zero_grad()
    loss = trainer.compute_loss(model, {k: v.clone() for k, v in inputs.items()})
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("build", [_bert, _llama], ids=["bert", "llama"])
def test_chunked_loss_and_gradient_equal_the_whole_batch(build, tmp_path, monkeypatch):
    model, left = build()
    inputs = batch(LENGTHS, left=left)
    widths = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda **kw: widths.append(kw["input_ids"].shape) or forward(**kw))
    whole_loss, whole_grads = _loss_and_grads(_trainer(model, tmp_path, 1), model, inputs)
    assert widths == [inputs["input_ids"].shape]
    chunk_loss, chunk_grads = _loss_and_grads(_trainer(model, tmp_path, 4), model, inputs)
    assert [rows for rows, _ in widths[1:]] == [5, 5, 4, 4] and max(w for _, w in widths[1:]) == 40
    assert chunk_loss == pytest.approx(float(whole_loss), rel=1e-5)
    assert whole_grads.keys() == chunk_grads.keys() and whole_grads
    for name, grad in whole_grads.items():
        torch.testing.assert_close(chunk_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_multi_label_loss_is_the_batch_mean_too(tmp_path):
    model, _ = _bert()
    model.config.problem_type = "multi_label_classification"
    targets = (torch.arange(len(LENGTHS) * 3).reshape(-1, 3) % 5 == 0).float()
    inputs = batch(LENGTHS, labels=targets.tolist())
    inputs["labels"] = targets
    whole, _ = _loss_and_grads(_trainer(model, tmp_path, 1), model, inputs)
    chunked, _ = _loss_and_grads(_trainer(model, tmp_path, 4), model, inputs)
    assert chunked == pytest.approx(float(whole), rel=1e-5)
