"""Summaries the agent sends upstream, built exactly as docs/interfaces.md section 6 says.

Two kinds: ``detections`` (new inventory entries, batched every few seconds) and
``trust`` (one home, one window). Each carries the agent id, a per-agent sequence
number, the bundle digest and the agent's counters. Only home ids (subscriber ids or
keyed hashes), device type names, times and counts go in; never an address, a port or a
flow record.

The sequence number continues from the spool's highest known one, so it survives
restarts: every summary is spooled before it is sent.
"""

import logging
import time

import msgpack

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: Detection events per summary, so one request stays small.
MAX_EVENTS = 256


class Summaries:
    """Numbers, encodes and hands summaries to a sink (the spool, or stdout in replay)."""

    def __init__(self, agent_id: str, model: str, metrics, sink, first_seq: int = 1):
        self.agent_id = agent_id
        self.model = model
        self.metrics = metrics
        self.sink = sink
        self.next_seq = first_seq
        self.pending: list[dict] = []

    def add_events(self, events: list[dict]) -> None:
        """Queue detection events for the next ``flush_detections``."""
        self.pending.extend(events)

    def flush_detections(self, now: float | None = None) -> list[dict]:
        """Emit the queued detection events as one summary per ``MAX_EVENTS``."""
        bodies = []
        counters = self.metrics.snapshot() if self.pending else None
        while self.pending:
            events, self.pending = self.pending[:MAX_EVENTS], self.pending[MAX_EVENTS:]
            bodies.append(self._body("detections", now, counters, events=events))
        self._emit(bodies)
        return bodies

    def emit_trust(self, windows: list[tuple[str, dict, list[dict]]], now=None) -> list[dict]:
        """Emit one trust summary per (home id, window, devices)."""
        counters = self.metrics.snapshot()
        bodies = [
            self._body("trust", now, counters, home=home, window=window, devices=devices)
            for home, window, devices in windows
        ]
        self._emit(bodies)
        return bodies

    def _body(self, kind: str, now: float | None, counters: dict, **fields) -> dict:
        body = {
            "v": FORMAT_VERSION,
            "agent": self.agent_id,
            "seq": self.next_seq,
            "kind": kind,
            "sent_at": time.time() if now is None else float(now),
            "model": self.model,
            "counters": counters,
            **fields,
        }
        self.next_seq += 1
        return body

    def _emit(self, bodies: list[dict]) -> None:
        if not bodies:
            return
        self.metrics.inc("summaries", len(bodies))
        self.sink([(body["seq"], encode(body), body) for body in bodies])


def encode(body: dict) -> bytes:
    """A summary as the msgpack bytes sent to the store."""
    return msgpack.packb(body, use_bin_type=True)


def decode(payload: bytes) -> dict:
    """msgpack bytes back to a summary (tests, and the store's own check)."""
    return msgpack.unpackb(payload, raw=False)
