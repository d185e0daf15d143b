"""Super Mediator JSON lines: the format of the paper's public dataset, read and written.

CERT's Super Mediator turns YAF's IPFIX into one JSON object per line. Flow records are
``{"flows": {...}}`` keyed by information-element names (reverse ones ``reverse`` +
name); timestamps are UTC text like ``2019-06-25 08:36:47.096``; MAC addresses end in a
colon (``20:f8:5e:ca:91:52:``); TCP flags and sequence numbers are hex text (``"0x1b"``);
a flow without reverse packets has no reverse keys. Other kinds of line (``stats``,
``tombstone``, ...) are skipped and counted.
"""

import json
import logging
import math
import socket
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np

from agent.errors import DecodeError
from agent.flows import FLOW_DTYPE, int_to_mac, mac_to_int

log = logging.getLogger(__name__)

_BATCH = 1 << 16
#: Line kinds counted by name; further kinds are counted together as "other".
_MAX_KINDS = 32
_V4_MAPPED = bytes(10) + b"\xff\xff"
_TIMES = ("flowStartMilliseconds", "flowEndMilliseconds")
_ADDRESSES = ("sourceAddress", "destinationAddress")
_MACS = ("sourceMacAddress", "destinationMacAddress")
#: Integer columns read straight from the key of the same name.
_INTEGERS = tuple(
    n for n in FLOW_DTYPE.names if n not in _TIMES + _ADDRESSES + _MACS + ("ipVersion",)
)
#: Super Mediator's words for flowEndReason (RFC 5102 codes).
END_REASONS = {"idle": 1, "active": 2, "eof": 3, "end": 3, "force": 4, "rsrc": 5}
#: Fields Super Mediator writes as hex text.
HEX_FIELDS = frozenset(
    {
        "initialTCPFlags", "unionTCPFlags", "reverseInitialTCPFlags", "reverseUnionTCPFlags",
        "tcpSequenceNumber", "reverseTcpSequenceNumber",
    }
)  # fmt: skip


def _lines(path) -> Iterator[tuple[int, str]]:
    """(line number from 1, text) of a file, or of standard input for ``-``."""
    if str(path) == "-":
        yield from enumerate(sys.stdin, 1)
        return
    with Path(path).open("r", encoding="utf-8", errors="replace") as stream:
        yield from enumerate(stream, 1)


def _objects(path, counters: dict, strict: bool) -> Iterator[tuple[int, dict]]:
    """(line number, the flow object) of each ``flows`` line; other kinds are counted."""
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict) or len(obj) != 1:
                raise ValueError("not an object with one key")
            ((kind, body),) = obj.items()
            if kind == "flows" and not isinstance(body, dict):
                raise ValueError("'flows' does not hold an object")
        except ValueError as exc:
            _malformed(counters, strict, f"line {number}: {exc}")
            continue
        if kind != "flows":
            key = kind if kind in counters or len(counters) < _MAX_KINDS else "other"
            counters[key] = counters.get(key, 0) + 1
            continue
        counters["flows"] = counters.get("flows", 0) + 1
        yield number, body


def _malformed(counters: dict, strict: bool, reason: str) -> None:
    counters["malformed"] = counters.get("malformed", 0) + 1
    if strict:
        raise DecodeError(f"malformed Super Mediator JSON, {reason}")
    if counters["malformed"] <= 10:
        log.warning("smjson %s", reason)


def _value(name: str, value):
    """One field's JSON value as the decoder's records hold it."""
    if isinstance(value, str):
        if value.startswith(("0x", "0X")):
            return int(value, 16)
        if name.endswith("MacAddress"):
            return int_to_mac(mac_to_int(value))
        if name.endswith(("Milliseconds", "Seconds")) and value[:1].isdigit() and "-" in value:
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value


def iter_smjson_records(
    path, *, counters: dict | None = None, strict: bool = True
) -> Iterator[dict]:
    """Each flow of a Super Mediator JSON file as a dict keyed by element name.

    Hex text becomes integers, timestamps aware UTC datetimes, MACs lose their trailing
    colon. ``counters`` (a dict) receives the count of each line kind and of malformed
    lines; with ``strict`` a malformed line raises ``DecodeError`` naming its number.
    """
    counters = {} if counters is None else counters
    for number, body in _objects(path, counters, strict):
        try:
            yield {name: _value(name, value) for name, value in body.items()}
        except (ValueError, TypeError) as exc:
            _malformed(counters, strict, f"line {number}: {exc}")


@lru_cache(maxsize=65536)
def _address(text: str) -> tuple[int, bytes]:
    """(IP version, the table's 16 octets) of an address in text."""
    try:
        if ":" in text:
            return 6, socket.inet_pton(socket.AF_INET6, text)
        return 4, _V4_MAPPED + socket.inet_pton(socket.AF_INET, text)
    except (OSError, TypeError):
        raise ValueError(f"{text!r} is not an IP address") from None


@lru_cache(maxsize=65536)
def _mac(text: str) -> int:
    if not isinstance(text, str):
        raise TypeError(f"MAC address {text!r} is not text")
    return mac_to_int(text)


def _integer(value) -> int:
    if isinstance(value, str):
        if value.startswith(("0x", "0X")):
            return int(value, 16)
        if value in END_REASONS:
            return END_REASONS[value]
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{value!r} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    return int(value)


def _row(body: dict) -> tuple:
    """(ipVersion, source, destination octets, start, end text, MACs, integers...)."""
    source = body.get("sourceIPv4Address") or body.get("sourceIPv6Address")
    destination = body.get("destinationIPv4Address") or body.get("destinationIPv6Address")
    if source is None or destination is None:
        raise ValueError("no source or destination address")
    version, src = _address(source)
    _, dst = _address(destination)
    macs = [_mac(body[m]) if body.get(m) else 0 for m in _MACS]
    values = [body.get(name, 0) for name in _INTEGERS]
    start, end = (body.get(t) for t in _TIMES)
    if not isinstance(start, str) or not isinstance(end, str):
        raise TypeError("flowStartMilliseconds/flowEndMilliseconds missing or not text")
    return version, src, dst, start, end, macs, values


def _table(rows: list[tuple], numbers: list[int], counters: dict, strict: bool) -> np.ndarray:
    """One batch of parsed lines as flow-table rows; a line with a bad value is dropped."""
    bad = _bad_rows(rows)
    for i, reason in bad.items():
        _malformed(counters, strict, f"line {numbers[i]}: {reason}")
    if bad:
        rows = [row for i, row in enumerate(rows) if i not in bad]
    out = np.zeros(len(rows), FLOW_DTYPE)
    if not rows:
        return out
    version, src, dst, start, end, macs, values = zip(*rows)
    out["ipVersion"] = version
    out["sourceAddress"] = np.frombuffer(b"".join(src), np.uint8).reshape(-1, 16)
    out["destinationAddress"] = np.frombuffer(b"".join(dst), np.uint8).reshape(-1, 16)
    out["flowStartMilliseconds"] = np.array(start, dtype="datetime64[ms]").astype(np.int64)
    out["flowEndMilliseconds"] = np.array(end, dtype="datetime64[ms]").astype(np.int64)
    out["sourceMacAddress"], out["destinationMacAddress"] = np.array(macs, np.uint64).T
    try:
        matrix = np.array(values, dtype=np.uint64)
    except (ValueError, TypeError, OverflowError):
        matrix = np.array([[_integer(v) for v in row] for row in values], dtype=np.uint64)
    for k, name in enumerate(_INTEGERS):
        out[name] = matrix[:, k]
    return out


def _bad_rows(rows: list[tuple]) -> dict[int, str]:
    """Index -> reason for rows whose times or integers do not convert (checked in bulk)."""
    bad = {}
    try:
        np.array([row[3:5] for row in rows], dtype="datetime64[ms]")
    except ValueError:
        for i, row in enumerate(rows):
            if not (_is_time(row[3]) and _is_time(row[4])):
                bad[i] = f"timestamp {row[3]!r} or {row[4]!r}"
    try:
        np.array([row[6] for row in rows], dtype=np.uint64)
    except (ValueError, TypeError, OverflowError):
        for i, row in enumerate(rows):
            for name, value in zip(_INTEGERS, row[6]):
                try:
                    if not 0 <= _integer(value) < 1 << 64:
                        raise ValueError(f"{value!r} is out of range")
                except (ValueError, TypeError) as exc:
                    bad.setdefault(i, f"field {name}: {exc}")
                    break
    return bad


def _is_time(text: str) -> bool:
    try:
        np.datetime64(text, "ms")
    except ValueError:
        return False
    return True


def read_smjson(path, *, counters: dict | None = None, strict: bool = True) -> np.ndarray:
    """Every flow of a Super Mediator JSON file as a ``FLOW_DTYPE`` array.

    ``counters`` receives line kinds as in ``iter_smjson_records``. With ``strict`` a
    malformed line raises ``DecodeError`` naming its line number; otherwise it is
    counted, logged, and skipped.
    """
    counters = {} if counters is None else counters
    parts, rows, numbers = [], [], []
    for number, body in _objects(path, counters, strict):
        try:
            rows.append(_row(body))
            numbers.append(number)
        except (ValueError, TypeError, KeyError) as exc:
            _malformed(counters, strict, f"line {number}: {exc}")
        if len(rows) >= _BATCH:
            parts.append(_table(rows, numbers, counters, strict))
            rows, numbers = [], []
    parts.append(_table(rows, numbers, counters, strict))
    return np.concatenate(parts)


def _time_text(ms: np.ndarray) -> list[str]:
    text = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
    return [t.replace("T", " ") for t in text.tolist()]


def write_smjson(path, flows: np.ndarray) -> int:
    """Write ``flows`` as Super Mediator JSON lines; returns the number of lines."""
    start = _time_text(flows["flowStartMilliseconds"])
    end = _time_text(flows["flowEndMilliseconds"])
    version = np.where(flows["ipVersion"] == 6, 6, 4)
    text = {}
    for side, column in (("source", "sourceAddress"), ("destination", "destinationAddress")):
        text[side] = [_address_text(bytes(a), v) for a, v in zip(flows[column], version)]
    forward, reverse = [], []
    for name in flows.dtype.names:
        if name not in _ADDRESSES + _TIMES + ("ipVersion",):
            (reverse if name.startswith("reverse") else forward).append(name)
    columns = {name: _json_column(name, flows[name]) for name in forward + reverse}
    biflow = (flows["reversePacketTotalCount"] > 0).tolist()

    with Path(path).open("w", encoding="utf-8") as out:
        for i, v in enumerate(version.tolist()):
            rec = {"flowStartMilliseconds": start[i], "flowEndMilliseconds": end[i]}
            rec[f"sourceIPv{v}Address"] = text["source"][i]
            rec[f"destinationIPv{v}Address"] = text["destination"][i]
            for name in forward:
                rec[name] = columns[name][i]
            if biflow[i]:
                for name in reverse:
                    rec[name] = columns[name][i]
            out.write(json.dumps({"flows": rec}) + "\n")
    return len(flows)


def _address_text(octets: bytes, version: int) -> str:
    if version == 4:
        return socket.inet_ntop(socket.AF_INET, octets[12:])
    return socket.inet_ntop(socket.AF_INET6, octets)


def _json_column(name: str, values: np.ndarray) -> list:
    """A column as the JSON values Super Mediator writes for it."""
    if name in _MACS:
        return [int_to_mac(v) + ":" for v in values.tolist()]
    if name in HEX_FIELDS:
        return [f"0x{v:02x}" for v in values.tolist()]
    return values.tolist()
