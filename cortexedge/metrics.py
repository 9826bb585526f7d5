"""Decoding metrics, defined once for every stage (numpy only).

R² follows NeuroBench: per output axis 1 − SSE / (N · var) over the whole set, then averaged.
"""

from __future__ import annotations

import numpy as np


def _as_2d(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a[:, None] if a.ndim == 1 else a.reshape(len(a), -1)


def r2_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """NeuroBench R²: per-axis 1 − SSE/(N·var(y_true)), averaged over axes."""
    t, p = _as_2d(y_true), _as_2d(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"r2_score: shapes differ {t.shape} vs {p.shape}")
    sse = ((t - p) ** 2).sum(axis=0)
    denom = len(t) * t.var(axis=0)
    return float(np.mean(1.0 - sse / np.where(denom > 0, denom, np.finfo(float).tiny)))


def correlation(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Pearson correlation per axis, averaged."""
    t, p = _as_2d(y_true), _as_2d(y_pred)
    tc, pc = t - t.mean(0), p - p.mean(0)
    den = np.sqrt((tc**2).sum(0) * (pc**2).sum(0))
    return float(np.mean((tc * pc).sum(0) / np.where(den > 0, den, np.inf)))


def accuracy(labels: np.ndarray, pred: np.ndarray) -> float:
    """Fraction of exact matches (element-wise for multi-label)."""
    return float(np.mean(np.asarray(labels) == np.asarray(pred)))


def _per_class(labels: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    classes = np.union1d(np.unique(labels), np.unique(pred))
    tp = np.array([np.sum((pred == c) & (labels == c)) for c in classes], dtype=float)
    fp = np.array([np.sum((pred == c) & (labels != c)) for c in classes], dtype=float)
    fn = np.array([np.sum((pred != c) & (labels == c)) for c in classes], dtype=float)
    return tp, fp, fn


def balanced_accuracy(labels: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in `labels`."""
    labels, pred = np.ravel(labels), np.ravel(pred)
    recalls = [np.mean(pred[labels == c] == c) for c in np.unique(labels)]
    return float(np.mean(recalls))


def macro_f1(labels: np.ndarray, pred: np.ndarray) -> float:
    """Unweighted mean F1 over classes."""
    tp, fp, fn = _per_class(np.ravel(labels), np.ravel(pred))
    den = 2 * tp + fp + fn
    return float(np.mean(np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), 0.0)))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Binary ROC AUC by the rank (Mann-Whitney) formula, ties averaged."""
    labels = np.ravel(labels).astype(bool)
    scores = np.ravel(scores).astype(np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_report(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro F1 and AUC for binary, multi-class or multi-label.

    `scores`: [N] or [N, 1] probabilities of class 1 (binary); [N, K] class probabilities with
    `labels` [N] (multi-class); [N, K] per-label probabilities with `labels` [N, K] (multi-label,
    metrics averaged over labels).
    """
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if labels.ndim == 2:
        per = [classification_report(labels[:, k], scores[:, k]) for k in range(labels.shape[1])]
        return {m: float(np.nanmean([p[m] for p in per])) for m in per[0]}
    if scores.ndim == 2 and scores.shape[1] > 1:
        pred = scores.argmax(1)
        aucs = [roc_auc(labels == k, scores[:, k]) for k in range(scores.shape[1])]
        auc = float(np.nanmean(aucs))
    else:
        scores = scores.reshape(-1)
        pred = (scores >= 0.5).astype(labels.dtype)
        auc = roc_auc(labels, scores)
    return {
        "accuracy": accuracy(labels, pred),
        "balanced_accuracy": balanced_accuracy(labels, pred),
        "f1": macro_f1(labels, pred),
        "auc": auc,
    }


def majority_rate(labels: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent class (chance level), per label averaged."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return float(np.mean([majority_rate(labels[:, k]) for k in range(labels.shape[1])]))
    _, counts = np.unique(labels, return_counts=True)
    return float(counts.max() / counts.sum())
