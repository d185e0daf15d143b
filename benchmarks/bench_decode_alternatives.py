"""IPFIX file bytes -> feature matrix: our decoder against the Python `ipfix` package and scapy.

All three read the same YAF-format file (``agent.ipfix.writer.write_yaf_file``: biflow
main template, RFC 5103 reverse elements, CERT flow statistics in a subTemplateMultiList)
from memory, and every row ends in ``agent.features.feature_matrix``, so the table compares
what a Python user would write to get features out of YAF's records:

- ours: ``Decoder`` (columnar, C or numpy record walk) straight into ``FLOW_DTYPE`` rows;
- `ipfix` 0.9.7 (python-ipfix), CERT elements registered with its IE-spec API: it returns
  one dict per record and leaves a subTemplateMultiList as opaque octets, so it is
  measured twice: main record only, and with the list walked by its own template objects;
- scapy 2.8: names template fields by element id alone (enterprise and reverse elements
  collide) and has no variable-length fields, so it cannot dissect YAF's data records; it
  is tried on the YAF file (the failure is reported) and measured on the same flows
  re-encoded as forward-only IANA elements of fixed length (no reverse, no statistics).
"""

import io
import logging
import struct
import tempfile
import time
import warnings
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from agent.features import feature_matrix
from agent.flows import FLOW_DTYPE, empty
from agent.ipfix import Decoder, iter_messages
from agent.ipfix.flowplan import concat_flows
from benchmarks.bench_scaling import synthetic_flows

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1)
_MS = timedelta(milliseconds=1)
_V4_MAPPED = bytes(10) + b"\xff\xff"
_CERT_PEN = 6871
_REVERSE_BIT = 0x4000
_STML_ID = 293


def testbed_flows(workdir: Path, scale: float = 0.02) -> np.ndarray:
    """Every record of the synthetic testbed's lab capture at ``scale`` (demo: 0.02)."""
    from compile import dataset
    from compile.testbed import cli as testbed_cli

    data = workdir / "testbed"
    if not (data / "devices.csv").is_file():
        testbed_cli.main(["--out", str(data), "--scale", str(scale), "--seed", "1"])
    return dataset.read_flows(dataset.flow_files(data))


# ---- ours ---------------------------------------------------------------------------------


def ours(data: bytes) -> np.ndarray:
    """Our decoder over a file's bytes."""
    decoder = Decoder()
    parts = [decoder.decode_message(m, "bench").flows for _, m in iter_messages(data)]
    return concat_flows(parts)


# ---- python-ipfix -------------------------------------------------------------------------


def ipfix_setup() -> None:
    """Load IANA, RFC 5103 and CERT elements (forward and 0x4000 reverse) into `ipfix`."""
    import ipfix.ie
    import ipfix.types

    from agent.ipfix.cert_elements import CERT_ELEMENTS

    ipfix.ie.use_iana_default()
    ipfix.ie.use_5103_default()
    for eid, name, dtype, has_reverse in CERT_ELEMENTS:
        try:
            ipfix.types.for_name(dtype)
        except (KeyError, ValueError):
            dtype = "octetArray"
        ipfix.ie.for_spec(f"{name}({_CERT_PEN}/{eid})<{dtype}>")
        if has_reverse:
            rname = "reverse" + name[0].upper() + name[1:]
            ipfix.ie.for_spec(f"{rname}({_CERT_PEN}/{eid | _REVERSE_BIT})<{dtype}>")
    ipfix.ie.for_spec(f"subTemplateMultiList({_STML_ID})<octetArray>")


def ipfix_records(data: bytes, walk_lists: bool) -> list[dict]:
    """One dict per data record; with ``walk_lists`` the subTemplateMultiList's
    sub-records (decoded by the package's own templates) are merged into their record."""
    from ipfix.message import MessageBuffer

    msg = MessageBuffer()
    stream = io.BytesIO(data)
    out = []
    while True:
        try:
            msg.read_message(stream)
        except EOFError:
            break
        for rec in msg.namedict_iterator():
            lists = rec.pop("subTemplateMultiList", None)
            if walk_lists and lists:
                _merge_stml(lists, msg.templates, msg.odid, rec)
            out.append(rec)
    return out


def _merge_stml(octets: bytes, templates: dict, domain: int, rec: dict) -> None:
    pos = 1  # semantic
    while pos + 4 <= len(octets):
        tid, length = struct.unpack_from("!HH", octets, pos)
        tmpl, off, end = templates[(domain, tid)], pos + 4, pos + length
        while off < end:
            sub, off = tmpl.decode_namedict_from(octets, off)
            rec.update(sub)
        pos = end


def dicts_to_flows(recs: list[dict]) -> np.ndarray:
    """Dict records (python-ipfix's value types) as a ``FLOW_DTYPE`` table, column by column."""
    flows = empty(len(recs))
    if not recs:
        return flows
    for name in ("flowStartMilliseconds", "flowEndMilliseconds"):
        flows[name] = [(r[name] - _EPOCH) // _MS for r in recs]
    v4 = np.array(["sourceIPv4Address" in r for r in recs])
    flows["ipVersion"] = np.where(v4, 4, 6)
    for side in ("source", "destination"):
        raw = b"".join(
            _V4_MAPPED + r[side + "IPv4Address"].packed
            if "sourceIPv4Address" in r
            else r[side + "IPv6Address"].packed
            for r in recs
        )
        flows[side + "Address"] = np.frombuffer(raw, np.uint8).reshape(-1, 16)
        mac = side + "MacAddress"
        flows[mac] = [int.from_bytes(r.get(mac, b""), "big") for r in recs]
    skip = {
        "flowStartMilliseconds",
        "flowEndMilliseconds",
        "ipVersion",
        "sourceAddress",
        "destinationAddress",
        "sourceMacAddress",
        "destinationMacAddress",
    }
    for name in FLOW_DTYPE.names:
        if name not in skip:
            flows[name] = [r.get(name, 0) for r in recs]
    return flows


# ---- scapy --------------------------------------------------------------------------------


def scapy_yaf(data: bytes) -> tuple[np.ndarray | None, str]:
    """scapy's netflowv9_defragment on the YAF file: (flows or None, what happened)."""
    from scapy.layers.netflow import NetflowHeader, netflowv9_defragment

    packets = [NetflowHeader(m) for _, m in iter_messages(data)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            netflowv9_defragment(packets, verb=0)
    except Exception as exc:  # noqa: BLE001 - any failure of scapy's is what is reported
        return None, f"{type(exc).__name__}: {exc}"
    return _scapy_flows(packets), "decoded"


_PLAIN_FIELDS = (
    ("flowStartMilliseconds", 152, ">u8"), ("flowEndMilliseconds", 153, ">u8"),
    ("octetTotalCount", 85, ">u8"), ("packetTotalCount", 86, ">u8"),
    ("sourceTransportPort", 7, ">u2"), ("destinationTransportPort", 11, ">u2"),
    ("protocolIdentifier", 4, "u1"), ("flowEndReason", 136, "u1"),
)  # fmt: skip
_PLAIN_V4, _PLAIN_V6 = 256, 257


def plain_file(flows: np.ndarray, per_message: int = 1000) -> bytes:
    """The flows as forward-only IANA records of fixed length (one v4 and one v6 template)."""
    from agent.ipfix.writer import encode_message, encode_set, template_record, template_set

    out = []
    for tid, version, alen, (src, dst) in (
        (_PLAIN_V4, 4, 4, (8, 12)),
        (_PLAIN_V6, 6, 16, (27, 28)),
    ):
        part = flows[flows["ipVersion"] == version]
        specs = [(0, eid, np.dtype(fmt).itemsize) for _, eid, fmt in _PLAIN_FIELDS]
        specs += [(0, src, alen), (0, dst, alen)]
        out.append(encode_message([template_set([template_record(tid, specs)])]))
        dtype = np.dtype(
            [(n, f) for n, _, f in _PLAIN_FIELDS]
            + [("src", "u1", (alen,)), ("dst", "u1", (alen,))]
        )
        for start in range(0, len(part), per_message):
            chunk = part[start : start + per_message]
            rows = np.empty(len(chunk), dtype)
            for name, _, _ in _PLAIN_FIELDS:
                rows[name] = chunk[name]
            rows["src"] = chunk["sourceAddress"][:, 16 - alen :]
            rows["dst"] = chunk["destinationAddress"][:, 16 - alen :]
            out.append(encode_message([encode_set(tid, [rows.tobytes()])], sequence=start))
    return b"".join(out)


def scapy_plain(data: bytes) -> np.ndarray:
    """scapy's dissection of ``plain_file`` output, as a ``FLOW_DTYPE`` table."""
    from scapy.layers.netflow import NetflowHeader, netflowv9_defragment

    packets = [NetflowHeader(m) for _, m in iter_messages(data)]
    netflowv9_defragment(packets, verb=0)
    return _scapy_flows(packets)


def _scapy_flows(packets) -> np.ndarray:
    from scapy.layers.netflow import NetflowDataflowsetV9

    recs = []
    for pkt in packets:
        layer = pkt
        while NetflowDataflowsetV9 in layer:
            layer = layer[NetflowDataflowsetV9]
            recs.extend(r for r in layer.records if not hasattr(r, "fieldValue"))
            layer = layer.payload
    flows = empty(len(recs))
    names = {
        "octetTotalCount": "BYTES_TOTAL",
        "packetTotalCount": "PACKETS_TOTAL",
        "sourceTransportPort": "L4_SRC_PORT",
        "destinationTransportPort": "L4_DST_PORT",
        "protocolIdentifier": "PROTOCOL",
        "flowEndReason": "flowEndReason",
    }
    for name in ("flowStartMilliseconds", "flowEndMilliseconds"):
        flows[name] = [_scapy_int(getattr(r, name)) for r in recs]
    for ours_name, theirs in names.items():
        flows[ours_name] = [_scapy_int(getattr(r, theirs)) for r in recs]
    v4 = np.array([hasattr(r, "IPV4_SRC_ADDR") for r in recs], bool)
    flows["ipVersion"] = np.where(v4, 4, 6)
    for side, f4, f6 in (
        ("source", "IPV4_SRC_ADDR", "IPV6_SRC_ADDR"),
        ("destination", "IPV4_DST_ADDR", "IPV6_DST_ADDR"),
    ):
        flows[side + "Address"] = [_scapy_address(r, f4, f6) for r in recs]
    return flows


def _scapy_int(value) -> int:
    """scapy gives integers, or raw octets for elements it has no integer type for."""
    return int.from_bytes(value, "big") if isinstance(value, bytes) else int(value)


def _scapy_address(rec, f4: str, f6: str) -> np.ndarray:
    import ipaddress

    if hasattr(rec, f4):
        return np.frombuffer(_V4_MAPPED + ipaddress.IPv4Address(getattr(rec, f4)).packed, "u1")
    return np.frombuffer(ipaddress.IPv6Address(getattr(rec, f6)).packed, "u1")


# ---- the measurement ----------------------------------------------------------------------


def data_sets(data: bytes) -> tuple[int, int]:
    """(messages, data sets) of a file: YAF starts a set at each change of record layout."""
    messages = sets = 0
    for _, msg in iter_messages(data):
        messages += 1
        pos, length = 16, struct.unpack_from("!H", msg, 2)[0]
        while pos + 4 <= length:
            set_id, set_length = struct.unpack_from("!HH", msg, pos)
            sets += set_id >= 256
            pos += max(set_length, 4)
    return messages, sets


def _timed(decode, data: bytes, repeat: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(flows, features, best decode seconds, best decode+features seconds)."""
    best_decode = best_total = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        flows = decode(data)
        middle = time.perf_counter()
        X = feature_matrix(flows)
        end = time.perf_counter()
        best_decode = min(best_decode, middle - start)
        best_total = min(best_total, end - start)
    return flows, X, best_decode, best_total


def _row(name, flows, X, t_decode, t_total, reference, note) -> dict:
    n = len(flows)
    same = n == len(reference) and np.array_equal(X, reference)
    return {
        "decoder": name,
        "records": n,
        "decode records/s": n / t_decode if n else 0.0,
        "to features records/s": n / t_total if n else 0.0,
        "features equal ours": "yes" if same else "no",
        "note": note,
    }


def run(quick: bool = False) -> dict:
    """Decode one YAF file with each decoder; records/s to flows and to features."""
    from agent.ipfix.writer import write_yaf_file

    ipfix_setup()
    source = "synthetic" if quick else "testbed scale 0.02"
    with tempfile.TemporaryDirectory() as tmp:
        flows = synthetic_flows(300) if quick else testbed_flows(Path(tmp))
    data = yaf_file_bytes(flows, write_yaf_file)
    # The same flows with records of one layout next to each other: few, long data sets.
    grouped = np.argsort(_layout_key(flows), kind="stable")
    data_grouped = yaf_file_bytes(flows[grouped], write_yaf_file)
    grouped_note = f"other file: same flows sorted by layout ({data_sets(data_grouped)[1]} sets)"

    got, X_ours, t_dec, t_tot = _timed(ours, data, 1 if quick else 3)
    table = [
        _row(
            "iotwatch Decoder (ours)",
            got,
            X_ours,
            t_dec,
            t_tot,
            X_ours,
            "full YAF record incl. flow statistics",
        )
    ]
    runs = [
        ("iotwatch Decoder, grouped layouts", ours, data_grouped, X_ours[grouped],
         grouped_note),
        ("ipfix 0.9.7 + list walk", lambda d: dicts_to_flows(ipfix_records(d, True)), data,
         X_ours, "subTemplateMultiList walked with the package's templates"),
        ("ipfix 0.9.7 main record", lambda d: dicts_to_flows(ipfix_records(d, False)), data,
         X_ours, "list left as octets: no MACs, no flow statistics"),
    ]  # fmt: skip
    for name, decode, file_bytes, reference, note in runs:
        got, X, t_dec, t_tot = _timed(decode, file_bytes, 1)
        table.append(_row(name, got, X, t_dec, t_tot, reference, note))
    table.append(_scapy_yaf_row(data, X_ours))
    plain = plain_file(flows)
    got, X, t_dec, t_tot = _timed(scapy_plain, plain, 1)
    table.append(_row("scapy 2.8, plain re-encoding", got, X, t_dec, t_tot, X_ours,
                      f"other file ({len(plain)} octets): forward IANA fields only, "
                      "no reverse, no statistics"))  # fmt: skip

    base_rate = table[0]["to features records/s"]
    for row in table:
        rate = row["to features records/s"]
        row["ours / this"] = base_rate / rate if rate else None
        log.info("decoder=%s records=%d records_per_s=%.0f", row["decoder"], row["records"], rate)
    counts = {row["decoder"]: row["records"] for row in table}
    messages, sets = data_sets(data)
    return {
        "rows": table,
        "source": source,
        "records_in_file": len(flows),
        "file_octets": len(data),
        "messages": messages,
        "data_sets": sets,
        "records_per_data_set": len(flows) / max(sets, 1),
        "all_full_decoders_same_count": counts["iotwatch Decoder (ours)"]
        == counts["ipfix 0.9.7 + list walk"]
        == len(flows),
    }


def yaf_file_bytes(flows: np.ndarray, write) -> bytes:
    """The bytes ``write_yaf_file`` writes for ``flows`` (export time: the last flow end)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flows.ipfix"
        write(path, flows, export_time=int(flows["flowEndMilliseconds"].max() // 1000))
        return path.read_bytes()


def _layout_key(flows: np.ndarray) -> np.ndarray:
    """What picks YAF's main template here: biflow or not, and the IP version."""
    return (flows["reversePacketTotalCount"] > 0) * 2 + (flows["ipVersion"] == 6)


def _scapy_yaf_row(data: bytes, reference: np.ndarray) -> dict:
    start = time.perf_counter()
    got, what = scapy_yaf(data)
    seconds = time.perf_counter() - start
    if got is not None:
        return _row("scapy 2.8 on the YAF file", got, feature_matrix(got), seconds, seconds,
                    reference, what)  # fmt: skip
    return {
        "decoder": "scapy 2.8 on the YAF file",
        "records": 0,
        "decode records/s": 0.0,
        "to features records/s": 0.0,
        "features equal ours": "no",
        "note": f"cannot dissect YAF records ({what}; {seconds:.2f} s)",
    }
