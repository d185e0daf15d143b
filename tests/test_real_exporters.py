"""Real exporters' IPFIX made in the test (softflowd, pmacct's nfprobe) decoded like tshark.

Each exporter reads a real capture from the shared samples and sends IPFIX over UDP to
a loopback port this test listens on. The datagrams are decoded by our ``Decoder`` and,
written into a pcap, by tshark's ``cflow`` dissector; both must agree field by field.
"""

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import time
from datetime import UTC, datetime

import numpy as np
import pytest

from agent.ipfix import Decoder
from tests.conftest import require_tool

LOOPBACK_PCAP = "yaf-2.16.4-local/input_loopback_http_udp.pcap"
IOT_PCAP = "yaf-2.16.4-local/iot_sentinel_setup_subset.pcap"
DEADLINE = 12.0


def _integer(text: str) -> int:
    return int(text, 0)


def _address(text: str) -> str:
    return str(text)


def _abstime(text: str) -> datetime:
    """tshark's ``Dec  3, 2026 16:17:57.357000000 UTC`` as an aware datetime."""
    month, day, year, clock = text.split()[:4]
    whole, _, fraction = clock.partition(".")
    stamp = datetime.strptime(f"{month} {day.rstrip(',')} {year} {whole}", "%b %d %Y %H:%M:%S")
    return stamp.replace(microsecond=int((fraction + "000000")[:6]), tzinfo=UTC)


def _uptime(text: str) -> int:
    return round(float(text) * 1000)


#: Our element name -> (tshark cflow field, tshark text -> our value).
TSHARK_FIELDS = {
    "sourceIPv4Address": ("cflow.srcaddr", _address),
    "destinationIPv4Address": ("cflow.dstaddr", _address),
    "sourceIPv6Address": ("cflow.srcaddrv6", _address),
    "destinationIPv6Address": ("cflow.dstaddrv6", _address),
    "sourceTransportPort": ("cflow.srcport", _integer),
    "destinationTransportPort": ("cflow.dstport", _integer),
    "protocolIdentifier": ("cflow.protocol", _integer),
    "octetDeltaCount": ("cflow.octets", _integer),
    "reverseOctetDeltaCount": ("cflow.octets", _integer),
    "packetDeltaCount": ("cflow.packets", _integer),
    "reversePacketDeltaCount": ("cflow.packets", _integer),
    "tcpControlBits": ("cflow.tcpflags", _integer),
    "reverseTcpControlBits": ("cflow.tcpflags", _integer),
    "ipClassOfService": ("cflow.tos", _integer),
    "reverseIpClassOfService": ("cflow.tos", _integer),
    "ipVersion": ("cflow.ip_version", _integer),
    "flowEndReason": ("cflow.flow_end_reason", _integer),
    "flowDirection": ("cflow.direction", _integer),
    "ingressInterface": ("cflow.inputint", _integer),
    "egressInterface": ("cflow.outputint", _integer),
    "flowStartSysUpTime": ("cflow.timestart", _uptime),
    "flowEndSysUpTime": ("cflow.timeend", _uptime),
    "flowStartMilliseconds": ("cflow.abstimestart", _abstime),
    "flowEndMilliseconds": ("cflow.abstimeend", _abstime),
}
_ADDRESS_KEYS = {"sourceIPv4Address", "sourceIPv6Address"}
MUST_COMPARE = {"cflow.srcport", "cflow.dstport", "cflow.protocol", "cflow.octets"}


def _collect(command: list[str], sock: socket.socket) -> list[bytes]:
    """Datagrams an exporter sends until it exits (or the deadline); then its session dies."""
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    datagrams, start = [], time.monotonic()
    try:
        while time.monotonic() - start < DEADLINE:
            try:
                datagrams.append(sock.recv(65535))
            except TimeoutError:
                if proc.poll() is not None:
                    break
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return datagrams


def _listen() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.5)
    return sock, sock.getsockname()[1]


def _write_pcap(path, datagrams: list[bytes], port: int) -> None:
    """A pcap (raw IPv4, linktype 101) with one UDP packet per datagram, to ``port``."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
        for i, payload in enumerate(datagrams):
            udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
            loop = bytes([127, 0, 0, 1])
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                             loop, loop)  # fmt: skip
            packet = ip + udp
            out.write(struct.pack("<IIII", 1_700_000_000 + i, 0, len(packet), len(packet)))
            out.write(packet)


def _tshark_flows(pcap, port: int) -> list[list[tuple[str, str]]]:
    """tshark's flow records in order, each its (field, text) pairs in template order."""
    tool = require_tool("tshark")
    text = subprocess.run(
        [tool, "-r", str(pcap), "-d", f"udp.port=={port},cflow", "-T", "json"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    flows = []

    def walk(node):
        if isinstance(node, list) and node and all(isinstance(p, tuple) for p in node):
            for key, value in node:
                if key.startswith("Flow ") and isinstance(value, list):
                    flows.append(_flatten(value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(json.loads(text, object_pairs_hook=list))
    return [f for f in flows if any(k in ("cflow.srcaddr", "cflow.srcaddrv6") for k, _ in f)]


def _flatten(pairs) -> list[tuple[str, str]]:
    out = []
    for key, value in pairs:
        if key == "cflow.timedelta_tree":
            out += _flatten(value)
        elif isinstance(value, str):
            out.append((key, value))
    return out


def _decode(datagrams: list[bytes]):
    decoder = Decoder()
    results = [decoder.decode_message(d, ("udp", "exporter"), records=True) for d in datagrams]
    assert [r.error for r in results] == [None] * len(results)
    records = [r for res in results for r in res.records if _ADDRESS_KEYS & set(r)]
    flows = np.concatenate([res.flows for res in results])
    return decoder, records, flows


def _normalise(value):
    if isinstance(value, str) and ":" in value:
        return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, value))
    return value


def _compare(records: list[dict], tflows: list[list[tuple[str, str]]]) -> set[str]:
    """Assert each record equals tshark's flow for every mapped field; fields compared."""
    assert len(records) == len(tflows) > 0
    compared = set()
    for record, tflow in zip(records, tflows):
        ours, theirs = {}, {}
        for name, value in record.items():
            if name in TSHARK_FIELDS:
                field, convert = TSHARK_FIELDS[name]
                ours.setdefault(field, []).append(_normalise(value))
        for field, text in tflow:
            for name, (tfield, convert) in TSHARK_FIELDS.items():
                if tfield == field:
                    theirs.setdefault(field, []).append(_normalise(convert(text)))
                    break
        for field, values in ours.items():
            assert theirs.get(field) == values, (field, record, tflow)
        compared |= set(ours)
    return compared


def _check_flow_table(flows: np.ndarray, records: list[dict]) -> None:
    """The flow table rows carry the same ports, protocol and counters as the records."""
    assert len(flows) == len(records)
    for row, record in zip(flows, records):
        assert row["sourceTransportPort"] == record.get("sourceTransportPort", 0)
        assert row["protocolIdentifier"] == record["protocolIdentifier"]
        assert row["octetTotalCount"] == record.get("octetDeltaCount", 0)
        assert row["packetTotalCount"] == record.get("packetDeltaCount", 0)


@pytest.mark.parametrize(
    ("capture", "extra"), [(LOOPBACK_PCAP, []), (IOT_PCAP, []), (LOOPBACK_PCAP, ["-b"])]
)
def test_softflowd_ipfix_matches_tshark(samples, tmp_path, capture, extra):
    """softflowd -v 10 (-b: RFC 5103 biflows) decodes to what tshark reads, field by field."""
    tool = require_tool("softflowd")
    sock, port = _listen()
    with sock:
        datagrams = _collect(
            [tool, "-r", str(samples / capture), "-v", "10", "-n", f"127.0.0.1:{port}",
             "-p", str(tmp_path / "softflowd.pid"), "-c", "none", "-d", *extra],
            sock,
        )  # fmt: skip
    assert datagrams, "softflowd sent nothing"
    decoder, records, flows = _decode(datagrams)
    _write_pcap(tmp_path / "export.pcap", datagrams, port)
    compared = _compare(records, _tshark_flows(tmp_path / "export.pcap", port))
    assert compared >= MUST_COMPARE | {"cflow.timestart", "cflow.srcaddr"}
    _check_flow_table(flows, records)
    assert decoder.counters.get("options_records", 0) >= 1
    if extra:
        assert all("reverseOctetDeltaCount" in r for r in records)
        assert np.array_equal(
            flows["reverseOctetTotalCount"], [r["reverseOctetDeltaCount"] for r in records]
        )


def test_pmacct_nfprobe_ipfix_matches_tshark(samples, tmp_path):
    """pmacctd's nfprobe plugin (IPFIX over UDP) decodes to what tshark reads."""
    tool = require_tool("pmacctd")
    sock, port = _listen()
    config = tmp_path / "pmacctd.conf"
    config.write_text(
        "daemonize: false\n"
        "pcap_savefile_delay: 0\n"
        f"pcap_savefile: {samples / IOT_PCAP}\n"
        "plugins: nfprobe\n"
        f"nfprobe_receiver: 127.0.0.1:{port}\n"
        "nfprobe_version: 10\n"
        "aggregate: src_host, dst_host, src_port, dst_port, proto, tos\n"
    )
    with sock:
        datagrams = _collect([tool, "-f", str(config)], sock)
    assert datagrams, "pmacctd sent nothing"
    _, records, flows = _decode(datagrams)
    _write_pcap(tmp_path / "export.pcap", datagrams, port)
    compared = _compare(records, _tshark_flows(tmp_path / "export.pcap", port))
    assert compared >= MUST_COMPARE | {"cflow.abstimestart", "cflow.srcaddr"}
    _check_flow_table(flows, records)
    start = np.array([r["flowStartMilliseconds"].timestamp() * 1000 for r in records])
    assert np.array_equal(flows["flowStartMilliseconds"], np.round(start).astype(np.int64))
