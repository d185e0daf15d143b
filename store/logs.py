"""Logging that does not flood: a repeated event is logged at most once per interval."""

import logging
import threading
import time

INTERVAL = 1.0

_lock = threading.Lock()
_last: dict[str, float] = {}
_muted: dict[str, int] = {}


def quietly(logger: logging.Logger, level: int, kind: str, message: str, *args) -> None:
    """Log ``message`` unless an event of ``kind`` was logged in the last INTERVAL; the
    next line logged says how many were muted meanwhile."""
    now = time.monotonic()
    with _lock:
        if now - _last.get(kind, -INTERVAL) < INTERVAL:
            _muted[kind] = _muted.get(kind, 0) + 1
            return
        muted = _muted.pop(kind, 0)
        _last[kind] = now
    logger.log(level, message + (f" (and {muted} more muted)" if muted else ""), *args)
