"""The C engine (``compile.meter._native``, built by cffi from ``_meter.c``), when built.

``available()`` tells whether the extension imported; callers fall back to the Python
engine otherwise, with identical results.
"""

import logging

import numpy as np

log = logging.getLogger(__name__)

try:
    from compile.meter._native import ffi, lib
except ImportError:
    ffi = lib = None


def available() -> bool:
    """Whether the compiled engine can be used."""
    return lib is not None
