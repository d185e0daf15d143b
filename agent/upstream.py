"""Pushes spooled summaries to the central store, in order, one per request.

``POST {url}/api/v1/ingest`` with ``X-Agent-Id``, ``X-Timestamp`` and ``X-Signature`` =
hex HMAC-SHA256(secret, "{timestamp}." + body) (docs/interfaces.md section 6). Outcomes:

- 200: taken (stored or a duplicate); acknowledged in the spool.
- 401, 413, 5xx, timeouts, refused connections: retried with exponential backoff; the
  summary stays at the head of the spool, so order is kept.
- any other 4xx: refused for good; logged, counted (``upstream_rejected``) and skipped.

A ``file://`` url appends each summary as a JSON line to that file instead (offline
runs, demos). The sender runs in its own thread; the spool is its only shared state.
"""

import hmac
import http.client
import json
import logging
import random
import threading
import time
from hashlib import sha256
from urllib.parse import urlsplit

from agent.errors import UpstreamError
from agent.summaries import decode

log = logging.getLogger(__name__)

INGEST_PATH = "/api/v1/ingest"
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 60.0
RETRIED_4XX = (401, 413)


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Signature`` header value for a body sent at ``timestamp``."""
    return hmac.new(secret, f"{timestamp}.".encode() + body, sha256).hexdigest()


class HttpTarget:
    """One keep-alive HTTP(S) connection to the store, reopened after any error."""

    def __init__(self, url: str, agent_id: str, secret: bytes, timeout: float):
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port
        self.path = parts.path.rstrip("/") + INGEST_PATH
        self.agent_id = agent_id
        self.secret = secret
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def send(self, body: bytes) -> tuple[int, bytes]:
        """POST one summary; (status, answer body). Network trouble raises OSError."""
        if self.conn is None:
            kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self.conn = kind(self.host, self.port, timeout=self.timeout)
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/msgpack",
            "X-Agent-Id": self.agent_id,
            "X-Timestamp": str(timestamp),
            "X-Signature": signature(self.secret, timestamp, body),
        }
        try:
            self.conn.request("POST", self.path, body=body, headers=headers)
            answer = self.conn.getresponse()
            data = answer.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise OSError(f"store unreachable: {exc}") from exc
        if answer.will_close:
            self.close()
        return answer.status, data

    def close(self) -> None:
        """Drop the connection."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class FileTarget:
    """Appends summaries as JSON lines to a local file (a ``file://`` url)."""

    def __init__(self, url: str):
        self.path = urlsplit(url).path

    def send(self, body: bytes) -> tuple[int, bytes]:
        """Write one summary line; always 'stored'."""
        with open(self.path, "a") as f:
            f.write(json.dumps(decode(body)) + "\n")
        return 200, b'{"status": "stored"}'

    def close(self) -> None:
        """Nothing to release."""


def make_target(url: str, agent_id: str, secret: bytes | None, timeout: float):
    """The target for an upstream url (http, https or file)."""
    if url.startswith("file://"):
        return FileTarget(url)
    if secret is None:
        raise UpstreamError(f"upstream {url} needs a secret")
    return HttpTarget(url, agent_id, secret, timeout)


class Uploader:
    """Thread that drains the spool to a target, oldest first, retrying with backoff."""

    def __init__(self, target, spool, metrics):
        self.target = target
        self.spool = spool
        self.metrics = metrics
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="upstream", daemon=True)
        self.backoff = 0.0

    def start(self) -> None:
        """Start sending in the background."""
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            if self.step():
                continue
            if self.backoff > 0:
                self.stopping.wait(self.backoff)
            else:
                self.wake.wait(timeout=1.0)
                self.wake.clear()

    def step(self) -> bool:
        """Try the head of the spool once; True when it left the spool."""
        head = self.spool.peek()
        if head is None:
            return False
        seq, body = head
        try:
            status, answer = self.target.send(body)
        except OSError as exc:
            return self._retry(seq, str(exc))
        if status == 200:
            self.spool.ack(seq)
            self.metrics.inc("upstream_sent")
            self.backoff = 0.0
            return True
        if 400 <= status < 500 and status not in RETRIED_4XX:
            log.error(
                "store refused summary seq=%d for good: %d %s",
                seq,
                status,
                answer[:200].decode(errors="replace"),
            )
            self.metrics.inc("upstream_rejected")
            self.spool.ack(seq)
            return True
        return self._retry(seq, f"HTTP {status} {answer[:200].decode(errors='replace')}")

    def _retry(self, seq: int, why: str) -> bool:
        self.metrics.inc("upstream_failures")
        first = self.backoff == 0
        self.backoff = min(BACKOFF_MAX, max(BACKOFF_FIRST, self.backoff * 2))
        self.backoff *= random.uniform(0.8, 1.0)
        level = logging.WARNING if first else logging.DEBUG
        log.log(level, "push of seq=%d failed (%s); retrying in %.1fs", seq, why, self.backoff)
        return False

    def drain(self, timeout: float) -> bool:
        """Wait until the spool is empty, at most ``timeout`` seconds; True if it is."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.spool.peek() is None:
                return True
            self.wake.set()
            time.sleep(0.05)
        return self.spool.peek() is None

    def stop(self) -> None:
        """Stop the thread after its current request."""
        self.stopping.set()
        self.wake.set()
        if self.thread.is_alive():
            self.thread.join(timeout=30.0)
        self.target.close()
