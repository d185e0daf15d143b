"""The agent's counters, their Prometheus text form, and rate-limited error logging.

Counters are plain named integers shared by every stage; gauges (spool depth, homes) are
read through callables when a snapshot is taken. The same snapshot goes into every
summary's ``counters`` and onto the optional local ``/metrics`` port.
"""

import asyncio
import logging
import threading
import time
from collections import defaultdict

log = logging.getLogger(__name__)

#: What each well-known counter means; unknown names are exported without help text.
HELP = {
    "datagrams_in": "IPFIX messages received from configured exporters",
    "datagrams_unknown_exporter": "datagrams or connections from unconfigured addresses",
    "records_in": "flow records decoded from IPFIX messages",
    "decode_errors": "IPFIX messages that failed to decode",
    "local": "records between two local addresses, not scored",
    "remote": "records with a remote end",
    "outside_prefixes": "remote records with neither end in the subscriber prefixes",
    "inbound": "remote records initiated from outside towards a home",
    "homes_over_cap": "records of new homes refused at the homes cap",
    "scored": "records scored by the model",
    "accepted": "scored records whose prediction passed the class thresholds",
    "discarded": "scored records whose prediction did not pass",
    "detections": "device types added to a home inventory",
    "summaries": "summaries built",
    "spool_depth": "summaries waiting in the spool",
    "spool_bytes": "bytes in the spool files",
    "upstream_sent": "summaries the store took",
    "upstream_failures": "failed attempts to push a summary",
    "upstream_rejected": "summaries the store refused for good (4xx)",
    "homes": "homes tracked",
}


class Metrics:
    """Named counters plus gauges; safe to bump from the event loop and one sender thread."""

    def __init__(self):
        self.counters: dict[str, int] = defaultdict(int)
        self.gauges: dict[str, callable] = {}
        self.sources: list[tuple[str, callable]] = []
        self._lock = threading.Lock()

    def inc(self, name: str, n: int = 1) -> None:
        """Add ``n`` to a counter."""
        with self._lock:
            self.counters[name] += n

    def gauge(self, name: str, read) -> None:
        """Register a gauge read by calling ``read()`` at snapshot time."""
        self.gauges[name] = read

    def include(self, prefix: str, read) -> None:
        """Merge another component's counter dict (``read()``), names prefixed, into snapshots."""
        self.sources.append((prefix, read))

    def snapshot(self) -> dict[str, int]:
        """Every counter and gauge now, sorted by name."""
        with self._lock:
            values = dict(self.counters)
        for prefix, read in self.sources:
            for name, value in dict(read()).items():
                values[prefix + name] = values.get(prefix + name, 0) + int(value)
        for name, read in self.gauges.items():
            values[name] = int(read())
        return dict(sorted(values.items()))

    def prometheus(self, prefix: str = "iotwatch_agent_") -> str:
        """The snapshot in Prometheus text exposition format 0.0.4."""
        lines = []
        for name, value in self.snapshot().items():
            kind = "gauge" if name in self.gauges else "counter"
            metric = prefix + name.replace("-", "_").replace(".", "_")
            if kind == "counter":
                metric += "_total"
            if name in HELP:
                lines.append(f"# HELP {metric} {HELP[name]}")
            lines.append(f"# TYPE {metric} {kind}")
            lines.append(f"{metric} {value}")
        return "\n".join(lines) + "\n"


async def serve_metrics(metrics: Metrics, address: str, port: int) -> asyncio.AbstractServer:
    """Answer any HTTP GET on ``address:port`` with the Prometheus text."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5.0)
            body = metrics.prometheus().encode()
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(answer, address, port)


class RateLimitedLog:
    """Logs the first of a run of equal errors per key, then one line per interval."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0):
        self.logger = logger
        self.interval = interval
        self._last: dict[tuple, float] = {}
        self._muted: dict[tuple, int] = defaultdict(int)

    def warning(self, key: tuple, message: str, *args) -> bool:
        """Log unless the same key was logged within the interval; True if logged."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._muted[key] += 1
            return False
        muted = self._muted.pop(key, 0)
        suffix = f" ({muted} more like it muted)" if muted else ""
        self.logger.warning(message + suffix, *args)
        self._last[key] = now
        if len(self._last) > 4096:
            self._last.clear()
        return True
