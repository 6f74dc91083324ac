"""The numbers scorers report: correlation for simulation, classification metrics for
detection and fuzzing. Undefined values are ``None``, never 0, so SQL averages skip them."""

from __future__ import annotations

import math
from typing import Sequence


def pearson(truth: Sequence[float], predicted: Sequence[float]) -> float | None:
    """Pearson correlation, or ``None`` when either side is constant (undefined)."""
    n = len(truth)
    if n != len(predicted):
        raise ValueError("truth and predictions differ in length")
    if n < 2:
        return None
    mean_t = math.fsum(truth) / n
    mean_p = math.fsum(predicted) / n
    var_t = math.fsum((t - mean_t) ** 2 for t in truth)
    var_p = math.fsum((p - mean_p) ** 2 for p in predicted)
    if var_t <= 1e-12 * max(1.0, mean_t * mean_t) * n or var_p <= 1e-12 * max(1.0, mean_p * mean_p) * n:
        return None
    cov = math.fsum((t - mean_t) * (p - mean_p) for t, p in zip(truth, predicted))
    return max(-1.0, min(1.0, cov / math.sqrt(var_t * var_p)))


def classification(labels: Sequence[int], predictions: Sequence[int]) -> dict[str, float | int | None]:
    """Counts, accuracy, balanced accuracy, precision, recall and F1 of 0/1 answers.

    A metric whose denominator is zero is ``None`` (e.g. precision when nothing was
    predicted positive); balanced accuracy needs both classes in ``labels``.
    """
    tp = sum(1 for y, p in zip(labels, predictions) if y and p)
    fp = sum(1 for y, p in zip(labels, predictions) if not y and p)
    tn = sum(1 for y, p in zip(labels, predictions) if not y and not p)
    fn = sum(1 for y, p in zip(labels, predictions) if y and not p)
    total = tp + fp + tn + fn
    recall = tp / (tp + fn) if tp + fn else None
    specificity = tn / (tn + fp) if tn + fp else None
    precision = tp / (tp + fp) if tp + fp else None
    if precision is not None and recall is not None:
        f1: float | None = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    else:
        f1 = None
    balanced = (recall + specificity) / 2 if recall is not None and specificity is not None else None
    return {
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "accuracy": (tp + tn) / total if total else None,
        "balanced_accuracy": balanced, "precision": precision, "recall": recall, "f1": f1,
    }
