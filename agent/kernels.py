"""The pipeline's compiled helper, ``agent._kernels``, or None when it is not built.

``features``, ``score``, ``homes``, ``inventory`` and ``trust`` each have a numpy twin of
their C step (tested side by side) and fall back to it, so an agent installed without a
compiler still runs, only slower.
"""

import logging

import numpy as np

log = logging.getLogger(__name__)


def _load():
    try:
        from agent import _kernels
    except ImportError:
        log.info("pipeline path=numpy (agent._kernels is not built)")
        return None
    return _kernels


#: The cffi module (``ffi``, ``lib``), or None.
kernels = _load()


#: The C element type of each numpy dtype the helpers take.
_C_TYPES = {
    np.dtype(np.int32): "int32_t[]",
    np.dtype(np.int64): "int64_t[]",
    np.dtype(np.uint64): "uint64_t[]",
    np.dtype(np.float64): "double[]",
    np.dtype(bool): "uint8_t[]",
}


def buffer(array: np.ndarray, dtype=None):
    """A C pointer to ``array`` (made contiguous, and of ``dtype`` when given, copying
    only if it is not already); output arrays must already be both, to be written in
    place."""
    array = np.ascontiguousarray(array, dtype=dtype)
    return kernels.ffi.from_buffer(_C_TYPES[array.dtype], array)
