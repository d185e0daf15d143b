"""The pipeline's compiled helper, ``agent._kernels``, or None when it is not built.

``features``, ``score``, ``homes``, ``inventory`` and ``trust`` each have a numpy twin of
their C step (tested side by side) and fall back to it, so an agent installed without a
compiler still runs, only slower.
"""

import logging

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
