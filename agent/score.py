"""Class-specific confidence thresholds (the paper's section IV) applied to predictions.

A flow's label is the forest's most probable class, its confidence that probability; the
prediction is accepted when the confidence lies in the label's interval: lambda1 =
[mean of correct confidences, 1], lambda2 = [mean - sigma, mean + sigma].
"""

import numpy as np

METHODS = ("lambda1", "lambda2")


def apply_thresholds(
    proba: np.ndarray, thresholds: dict, method: str = "lambda1"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label int32, confidence float64, accepted bool) from class probabilities."""
    if method not in thresholds:
        raise ValueError(f"unknown threshold method {method!r}; use one of {METHODS}")
    low, high = thresholds[method]

    label = np.argmax(proba, axis=1).astype(np.int32)
    confidence = proba[np.arange(len(label)), label].astype(np.float64, copy=False)
    accepted = (confidence >= low[label]) & (confidence <= high[label])
    return label, confidence, accepted


def score(bundle, X: np.ndarray, method: str = "lambda1"):
    """Score float32 feature rows with a loaded bundle: (label, confidence, accepted)."""
    proba = bundle.predictor.predict_proba(X)
    return apply_thresholds(proba, bundle.thresholds, method)
