"""Class-specific confidence thresholds (the paper's section IV) applied to predictions.

A flow's label is the forest's most probable class, its confidence that probability; the
prediction is accepted when the confidence lies in the label's interval: lambda1 =
[mean of correct confidences, 1], lambda2 = [mean - sigma, mean + sigma]. The compiled
helper ``agent._kernels`` does the three steps in one pass over the probabilities when it
is built; the numpy code is its twin and the fallback.
"""

import numpy as np

from agent.kernels import buffer
from agent.kernels import kernels as _kernels

METHODS = ("lambda1", "lambda2")


def apply_thresholds(
    proba: np.ndarray, thresholds: dict, method: str = "lambda1", *, native: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label int32, confidence float64, accepted bool) from class probabilities."""
    if method not in thresholds:
        raise ValueError(f"unknown threshold method {method!r}; use one of {METHODS}")
    low, high = thresholds[method]
    compiled = native and _kernels is not None and proba.ndim == 2 and len(proba) > 0
    if compiled and len(low) == len(high) == proba.shape[1]:
        return _accept_compiled(proba, low, high)

    label = np.argmax(proba, axis=1).astype(np.int32)
    confidence = proba[np.arange(len(label)), label].astype(np.float64, copy=False)
    accepted = (confidence >= low[label]) & (confidence <= high[label])
    return label, confidence, accepted


def _accept_compiled(proba: np.ndarray, low, high):
    """``apply_thresholds`` through ``agent._kernels``: the same three arrays."""
    n = len(proba)
    label = np.empty(n, dtype=np.int32)
    confidence = np.empty(n, dtype=np.float64)
    accepted = np.empty(n, dtype=bool)
    _kernels.lib.iw_accept(
        buffer(proba, np.float64), n, proba.shape[1], buffer(low, np.float64),
        buffer(high, np.float64), buffer(label), buffer(confidence), buffer(accepted),
    )  # fmt: skip
    return label, confidence, accepted


def score(bundle, X: np.ndarray, method: str = "lambda1"):
    """Score float32 feature rows with a loaded bundle: (label, confidence, accepted)."""
    proba = bundle.predictor.predict_proba(X)
    return apply_thresholds(proba, bundle.thresholds, method)
