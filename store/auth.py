"""Request signatures: hex HMAC-SHA256(secret, "{timestamp}." + body), checked in a window.

The agent signs each summary with its own secret; the store finds the secret by the
X-Agent-Id header and accepts the request only when the signature matches and the
X-Timestamp (integer unix seconds) is within the replay window of the store's clock.
"""

import hashlib
import hmac
import time

AGENT_HEADER = "X-Agent-Id"
TIMESTAMP_HEADER = "X-Timestamp"
SIGNATURE_HEADER = "X-Signature"
MAX_TIMESTAMP_DIGITS = 12


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``{timestamp}.`` followed by the body."""
    mac = hmac.new(secret, f"{timestamp}.".encode("ascii"), hashlib.sha256)
    mac.update(body)
    return mac.hexdigest()


def signed_headers(agent_id: str, secret: bytes, body: bytes, now: float | None = None):
    """The three headers an agent sends with ``body`` (used by tests and benchmarks)."""
    timestamp = int(time.time() if now is None else now)
    return {
        AGENT_HEADER: agent_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
        "Content-Type": "application/msgpack",
    }


def check(
    headers, body: bytes, secrets: dict[str, bytes], window: float, now: float | None = None
) -> tuple[str | None, str]:
    """(agent id, "") when the request is authentic, else (None, reason)."""
    agent_id = headers.get(AGENT_HEADER)
    stamp = headers.get(TIMESTAMP_HEADER, "")
    given = headers.get(SIGNATURE_HEADER, "")
    if not agent_id or agent_id not in secrets:
        return None, "unknown or missing agent id"
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > MAX_TIMESTAMP_DIGITS:
        return None, "missing or malformed timestamp"

    timestamp = int(stamp)
    now = time.time() if now is None else now
    if abs(now - timestamp) > window:
        return None, "timestamp outside the replay window"

    expected = signature(secrets[agent_id], timestamp, body)
    if not hmac.compare_digest(expected.encode(), given.lower().encode("utf-8", "replace")):
        return None, "bad signature"
    return agent_id, ""
