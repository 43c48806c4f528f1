"""Whole-split classification metrics (numpy), as the original reports them.

Single-sequence tasks report macro-F1 and select on AUROC; paired tasks report
micro-F1 (= accuracy) and select on accuracy. AUROC uses softmax probabilities:
binary on the positive class, one-vs-rest macro for more classes.
"""
from __future__ import annotations

import numpy as np

METRICS = ("accuracy", "macro_f1", "micro_f1", "auroc", "loss")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def f1_scores(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[float, float]:
    """(macro-F1, micro-F1). A class never predicted nor present scores F1 = 0 (sklearn's zero_division=0)."""
    f1s = []
    for c in range(num_classes):
        tp = np.sum((pred == c) & (labels == c))
        fp = np.sum((pred == c) & (labels != c))
        fn = np.sum((pred != c) & (labels == c))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)), float(np.mean(pred == labels))


def binary_auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve via the rank statistic (ties get average ranks); NaN if one class is absent."""
    positive = positive.astype(bool)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """All of :data:`METRICS` for ``<f32>[n, C]`` logits and ``<int>[n]`` labels."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels)
    num_classes = logits.shape[1]
    pred = logits.argmax(axis=1)
    macro, micro = f1_scores(pred, labels, num_classes)
    probs = softmax(logits)
    if num_classes == 2:
        auroc = binary_auroc(probs[:, 1], labels == 1)
    else:
        per_class = [binary_auroc(probs[:, c], labels == c) for c in range(num_classes)]
        per_class = [a for a in per_class if not np.isnan(a)]
        auroc = float(np.mean(per_class)) if per_class else float("nan")
    return {"accuracy": float(np.mean(pred == labels)), "macro_f1": macro, "micro_f1": micro,
            "auroc": auroc, "loss": cross_entropy(logits, labels)}
