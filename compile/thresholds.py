"""Class-specific confidence thresholds from out-of-fold predictions (paper, section IV),
and the Table III count of what each method accepts and discards.
"""

import numpy as np

from agent.score import METHODS, apply_thresholds


def class_thresholds(proba: np.ndarray, y: np.ndarray) -> dict:
    """lambda1 and lambda2 per class from the confidences of correct predictions.

    For class L, C_L are the confidences of rows of L predicted as L: lambda1 =
    [mean(C_L), 1], lambda2 = [mean(C_L) - std(C_L), mean(C_L) + std(C_L)]. A class
    never predicted correctly gets [1, 1] (nothing but certainty accepted).
    """
    n_classes = proba.shape[1]
    label = proba.argmax(axis=1)
    confidence = proba.max(axis=1)
    mean = np.ones(n_classes)
    sigma = np.zeros(n_classes)

    for k in range(n_classes):
        correct = confidence[(y == k) & (label == k)]
        if len(correct):
            mean[k] = correct.mean()
            sigma[k] = correct.std()

    return {
        "lambda1": {"low": mean.tolist(), "high": np.ones(n_classes).tolist()},
        "lambda2": {"low": (mean - sigma).tolist(), "high": (mean + sigma).tolist()},
    }


def as_arrays(thresholds: dict) -> dict:
    """The manifest form {method: {low, high}} as {method: (low array, high array)}."""
    return {
        m: (np.asarray(t["low"], dtype=float), np.asarray(t["high"], dtype=float))
        for m, t in thresholds.items()
    }


def table3(proba: np.ndarray, y: np.ndarray, thresholds: dict) -> dict:
    """Accepted/discarded x correct/incorrect counts for each method (Table III)."""
    arrays = as_arrays(thresholds)
    out = {}
    for method in METHODS:
        label, _, accepted = apply_thresholds(proba, arrays, method)
        correct = label == y
        out[method] = {
            "accepted_correct": int(np.sum(accepted & correct)),
            "accepted_incorrect": int(np.sum(accepted & ~correct)),
            "discarded_correct": int(np.sum(~accepted & correct)),
            "discarded_incorrect": int(np.sum(~accepted & ~correct)),
        }
    return out


def confidence_by_class(proba: np.ndarray, y: np.ndarray) -> dict:
    """Mean confidence of correct and of incorrect predictions per true class (Fig. 4)."""
    label = proba.argmax(axis=1)
    confidence = proba.max(axis=1)
    correct_mean, incorrect_mean = [], []
    for k in range(proba.shape[1]):
        rows = y == k
        hit = confidence[rows & (label == k)]
        miss = confidence[rows & (label != k)]
        correct_mean.append(float(hit.mean()) if len(hit) else None)
        incorrect_mean.append(float(miss.mean()) if len(miss) else None)
    return {"correct": correct_mean, "incorrect": incorrect_mean}
