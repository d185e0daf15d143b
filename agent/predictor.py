"""The compiled forest: TL2cgen's shared library, loaded with cffi in ABI mode.

The library exports TL2cgen's ``predict(union Entry*, int, double*)`` for one row and,
when built by ``compile.build``, ``iotwatch_predict_batch`` which runs that ``predict``
over many float32 rows in one call. ``predict`` adds into its result (so the result is
zeroed first), takes a missing value as ``missing = -1``, and with quantized thresholds
overwrites its input row, so rows are copied into a scratch buffer before each call.
"""

import logging
from pathlib import Path

import numpy as np
from cffi import FFI

from agent.errors import BundleError

log = logging.getLogger(__name__)

_CDEF = """
union Entry { int missing; double fvalue; int qvalue; };
int32_t get_num_target(void);
void get_num_class(int32_t* out);
int32_t get_num_feature(void);
void predict(union Entry* data, int pred_margin, double* result);
void iotwatch_predict_batch(const float* rows, int64_t n_rows, double* out);
"""

_ffi = FFI()
_ffi.cdef(_CDEF)


class Predictor:
    """Class probabilities from a TL2cgen library, as scikit-learn's ``predict_proba``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._lib = _ffi.dlopen(str(self.path))
        except OSError as exc:
            raise BundleError(f"{self.path}: cannot load the model library: {exc}") from exc

        try:
            self.n_features = int(self._lib.get_num_feature())
            n_class = _ffi.new("int32_t[1]")
            self._lib.get_num_class(n_class)
            self.n_classes = int(n_class[0])
        except AttributeError as exc:
            raise BundleError(f"{self.path}: not a TL2cgen model library: {exc}") from exc

        try:
            self._batch = self._lib.iotwatch_predict_batch
        except AttributeError:
            log.info("library=%s has no batch entry point; scoring row by row", self.path)
            self._batch = None

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """(n, n_classes) float64 probabilities for float32 rows (n, n_features)."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got {X.shape}")
        out = np.zeros((X.shape[0], self.n_classes), dtype=np.float64)
        if X.shape[0] == 0:
            return out

        if self._batch is not None:
            self._batch(
                _ffi.from_buffer("float[]", X), X.shape[0], _ffi.from_buffer("double[]", out)
            )
            return out
        return self._predict_rows(X, out)

    def _predict_rows(self, X: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Row-at-a-time path for libraries built without the batch entry point."""
        entries = _ffi.new("union Entry[]", self.n_features)
        scratch = np.frombuffer(_ffi.buffer(entries), dtype=np.float64)
        result = _ffi.cast("double*", _ffi.from_buffer(out))
        nan = np.isnan(X)

        for i in range(X.shape[0]):
            scratch[:] = X[i]
            for j in np.flatnonzero(nan[i]):
                scratch[j] = 0.0
                entries[j].missing = -1
            self._lib.predict(entries, 0, result + i * self.n_classes)
        return out
