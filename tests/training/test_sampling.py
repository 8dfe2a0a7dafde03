"""Length-grouped training order (emogrid.training.sampling) and its wiring into the cell's Trainer."""

from __future__ import annotations

import random
import statistics

import pytest
import torch

from emogrid.training.sampling import length_grouped_order


def comment_lengths(n: int, seed: int = 0) -> list[int]:
    """Token counts shaped like GoEmotions comments: mostly short, a long tail."""
    rng = random.Random(seed)
    return [min(128, max(3, int(rng.lognormvariate(2.8, 0.6)))) for _ in range(n)]


def batches(order: list[int], size: int) -> list[list[int]]:
    return [order[i:i + size] for i in range(0, len(order), size)]


def pad_ratio(lengths: list[int], order: list[int], size: int) -> float:
    """Tokens after dynamic padding / real tokens."""
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches(order, size))
    return padded / sum(lengths)


@pytest.mark.parametrize("n,size", [(800, 16), (803, 16), (10, 4), (5, 8), (0, 4)])
def test_every_example_once_full_batches_first(n, size):
    lengths = comment_lengths(n)
    order = length_grouped_order(lengths, size, seed=3)
    assert sorted(order) == list(range(n))
    sizes = [len(b) for b in batches(order, size)]
    assert all(s == size for s in sizes[:-1]) and (not sizes or 0 < sizes[-1] <= size)


def test_same_seed_and_epoch_same_order_otherwise_different():
    lengths = comment_lengths(800)
    a = length_grouped_order(lengths, 16, seed=1, epoch=0)
    assert a == length_grouped_order(lengths, 16, seed=1, epoch=0)
    assert a != length_grouped_order(lengths, 16, seed=1, epoch=1)
    assert a != length_grouped_order(lengths, 16, seed=2, epoch=0)


def test_far_less_padding_than_random_batches():
    lengths = comment_lengths(800)
    grouped = pad_ratio(lengths, length_grouped_order(lengths, 16, seed=0), 16)
    perm = list(range(800))
    random.Random(0).shuffle(perm)
    shuffled = pad_ratio(lengths, perm, 16)
    assert grouped < 1.1 < 1.4 < shuffled, (grouped, shuffled)


def test_batch_order_does_not_sweep_lengths():
    """Unlike a plain sort, step position must not predict batch length (no curriculum)."""
    lengths = comment_lengths(1600)
    means = [statistics.mean(lengths[i] for i in b) for b in batches(length_grouped_order(lengths, 16, seed=0), 16)]
    positions = list(range(len(means)))
    assert abs(statistics.correlation(positions, means)) < 0.2
    # and consecutive batches are not neighbours in length more often than chance
    rises = sum(b > a for a, b in zip(means, means[1:])) / (len(means) - 1)
    assert 0.35 < rises < 0.65


def test_rejects_empty_batch():
    with pytest.raises(ValueError, match="batch_size"):
        length_grouped_order([3, 4], 0, seed=0)


def _trainer(tmp_path, n, batch, accum, grouping):
    from transformers import TrainingArguments

    from emogrid.training.trainer import CellTrainer

    lengths = comment_lengths(n)
    data = [{"input_ids": list(range(k)), "labels": 0} for k in lengths]
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=batch,
                             gradient_accumulation_steps=accum, use_cpu=True, seed=5, data_seed=5,
                             report_to="none", remove_unused_columns=False)
    trainer = CellTrainer(model=torch.nn.Linear(1, 1), args=args, train_dataset=data,
                          data_collator=lambda rows: [len(r["input_ids"]) for r in rows],
                          length_grouping=grouping)
    return trainer, lengths


def _epoch(loader, epoch):
    loader.set_epoch(epoch)  # what the Trainer's loop calls at each epoch start
    return [b for b in loader]


def test_cell_trainer_batches_by_length_and_reshuffles_each_epoch(tmp_path):
    trainer, lengths = _trainer(tmp_path, 320, batch=8, accum=2, grouping=True)
    loader = trainer.get_train_dataloader()
    first, second = _epoch(loader, 0), _epoch(loader, 1)
    assert first != second and first == _epoch(loader, 0)
    assert sorted(x for b in first for x in b) == sorted(lengths)
    padded = sum(len(b) * max(b) for b in first) / sum(lengths)
    assert padded < 1.15, padded
    # grouped by the optimizer step (8 x 2): the two micro-batches of a step are length neighbours
    steps = [first[i] + first[i + 1] for i in range(0, len(first), 2)]
    assert sum(len(s) * max(s) for s in steps) / sum(lengths) < 1.15


def test_length_grouping_off_gives_plain_random_batches(tmp_path):
    trainer, lengths = _trainer(tmp_path, 320, batch=8, accum=1, grouping=False)
    first = _epoch(trainer.get_train_dataloader(), 0)
    assert sum(len(b) * max(b) for b in first) / sum(lengths) > 1.3
