"""emogrid.training.metrics: METRICS contract, checked against hand-computed values."""

import numpy as np
import pytest

from emogrid.training import metrics as M

LABELS = ["a", "b", "c"]


def test_single_label_values_and_shape():
    gold = np.array([0, 0, 1, 2, 2, 2])
    pred = np.array([0, 1, 1, 2, 2, 0])
    out = M.compute(gold, pred, LABELS, multi_label=False)
    assert out["accuracy"] == pytest.approx(4 / 6)
    assert out["n"] == 6 and out["labels"] == LABELS
    assert out["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    # class c: precision 2/2, recall 2/3
    assert out["per_class"]["c"] == {
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(0.8),
        "support": 3,
    }
    assert out["recall_macro"] == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    assert "f1_micro" not in out and "exact_match" not in out
    for key in ("precision_macro", "recall_macro", "f1_macro", "precision_weighted", "recall_weighted", "f1_weighted"):
        assert isinstance(out[key], float)


def test_absent_class_counts_as_zero_not_missing():
    out = M.compute(np.array([0, 0]), np.array([0, 0]), LABELS, multi_label=False)
    assert out["per_class"]["b"]["support"] == 0
    assert len(out["confusion_matrix"]) == 3


def test_multi_label_threshold_and_exact_match():
    logits = np.array([[2.0, -2.0, 0.1], [-1.0, 3.0, -3.0]])
    out, probs, pred = M.from_logits(logits, [[0, 2], [0, 1]], LABELS, multi_label=True, threshold=0.5)
    assert pred.tolist() == [[1, 0, 1], [0, 1, 0]]
    assert out["exact_match"] == out["accuracy"] == 0.5
    assert out["f1_micro"] == pytest.approx(2 * 3 / (2 * 3 + 1))  # tp 3, fn 1, fp 0
    assert "confusion_matrix" not in out
    assert M.pred_lists(pred, True) == [[0, 2], [1]]
    assert np.allclose(probs, 1 / (1 + np.exp(-logits)))


def test_softmax_probabilities_sum_to_one():
    probs = M.probabilities(np.array([[1000.0, 0.0], [0.0, 0.0]]), multi_label=False)
    assert np.allclose(probs.sum(axis=1), 1.0) and probs[1, 0] == pytest.approx(0.5)
