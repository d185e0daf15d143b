"""IPFIX decode speed: YAF biflow records with flow statistics, bytes -> FLOW_DTYPE rows.

The input repeats the flow records of YAF 2.16.4's ``yaf_flowstats_biflow.yaf`` (from
``../shared/ipfix-samples``): each record carries its flow-statistics sub-record (and,
for TCP, the TCP sub-record) in a subTemplateMultiList, so every record is variable
length. Messages are filled up to ``message_size`` octets, as YAF fills them in files
(about 64 KiB) or over UDP (about 1400). The UDP case is measured twice more as YAF
really sends it (``yaf_messages(mtu=1400, templates="every")``: the template set again
in every datagram, four records each): one ``decode_message`` call per datagram, and
``decode_datagrams`` on bursts of datagrams, as a receive loop drains its socket.

    .venv/bin/python benchmarks/bench_decode.py            # 1,000,000 records
    .venv/bin/python benchmarks/bench_decode.py --quick    # 100,000 records
"""

import argparse
import itertools
import json
import struct
import time
from pathlib import Path

import numpy as np

from agent.ipfix import Decoder, decode_file, fallback, flowplan, iter_messages
from agent.ipfix.writer import yaf_messages

SAMPLE = (
    Path(__file__).resolve().parent.parent.parent
    / "shared/ipfix-samples/yaf-2.16.4-local/yaf_flowstats_biflow.yaf"
)
FLOW_TEMPLATE_ID = 0xB010


def sample_parts(path: Path = SAMPLE) -> tuple[list[bytes], list[bytes]]:
    """(template messages, flow records) of the YAF sample."""
    templates, records = [], []
    decoder = Decoder()
    for _, msg in iter_messages(path.read_bytes()):
        decoder.decode_message(msg, "split")
        pos, length = 16, struct.unpack_from("!H", msg, 2)[0]
        while pos < length:
            set_id, set_len = struct.unpack_from("!HH", msg, pos)
            if set_id in (2, 3) and msg not in templates:
                templates.append(msg)
            elif set_id == FLOW_TEMPLATE_ID:
                body = msg[pos + 4 : pos + set_len]
                records.extend(split_records(body, decoder, msg))
            pos += set_len
    return templates, records


def split_records(body: bytes, decoder: Decoder, msg: bytes) -> list[bytes]:
    """The data set's records, using the decoder's own record walk for the boundaries."""
    domain = struct.unpack_from("!I", msg, 12)[0]
    template = decoder.templates.get("split", domain, FLOW_TEMPLATE_ID, 0.0)
    plan = flowplan.compile_plan(template, {})
    offsets, _, _ = fallback.walk(np.frombuffer(body, np.uint8), plan)
    starts = offsets.reshape(-1, len(plan.field_lens))[:, 0].tolist() + [len(body)]
    return [body[a:b] for a, b in itertools.pairwise(starts)]


def build_messages(n_records: int, message_size: int) -> tuple[list[bytes], list[bytes]]:
    """(template messages, data messages) holding ``n_records`` flow records in total."""
    templates, records = sample_parts()
    messages, batch, size, made, seq = [], [], 0, 0, 0
    while made < n_records:
        record = records[made % len(records)]
        if size + len(record) > message_size - 20 and batch:
            messages.append(_message(batch, seq))
            seq += len(batch)
            batch, size = [], 0
        batch.append(record)
        size += len(record)
        made += 1
    messages.append(_message(batch, seq))
    return templates, messages


def _message(records: list[bytes], seq: int) -> bytes:
    body = b"".join(records)
    data_set = struct.pack("!HH", FLOW_TEMPLATE_ID, 4 + len(body)) + body
    return struct.pack("!HHIII", 10, 16 + len(data_set), 1_700_000_000, seq, 0) + data_set


def measure(n_records: int, message_size: int, use_native: bool) -> dict:
    """Records per second for one configuration (best of three runs).

    Wall-clock and CPU time are both given: on a shared machine the CPU time is the
    fairer figure for "one core".
    """
    templates, messages = build_messages(n_records, message_size)
    saved = flowplan._native
    if not use_native:
        flowplan._native = None
    try:
        best = best_cpu = None
        for _ in range(3):
            decoder = Decoder()
            for msg in templates:
                decoder.decode_message(msg, "bench")
            start, cpu_start = time.perf_counter(), time.process_time()
            parts = [decoder.decode_message(msg, "bench").flows for msg in messages]
            flows = flowplan.concat_flows(parts)
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
            best = elapsed if best is None else min(best, elapsed)
            best_cpu = cpu if best_cpu is None else min(best_cpu, cpu)
            assert len(flows) == n_records and not any(
                k.startswith("error_") for k in decoder.counters
            )
    finally:
        flowplan._native = saved
    return {
        "records": n_records,
        "message_size": message_size,
        "messages": len(messages),
        "path": "native" if use_native else "numpy",
        "seconds": round(best, 4),
        "records_per_second": round(n_records / best),
        "cpu_seconds": round(best_cpu, 4),
        "records_per_cpu_second": round(n_records / best_cpu),
    }


def udp_datagrams(n_records: int) -> list[bytes]:
    """The sample's records as YAF exports them over UDP: 1400 octets, templates in each."""
    flows = decode_file(SAMPLE)
    rows = np.tile(flows, n_records // len(flows) + 1)[:n_records]
    return list(yaf_messages(rows, mtu=1400, templates="every", export_time=1_700_000_000))


def measure_udp(n_records: int, burst: int, use_native: bool) -> dict:
    """Records per second over UDP-style datagrams: ``burst`` 0 is one ``decode_message``
    call per datagram, otherwise ``decode_datagrams`` on bursts of that many (best of 3)."""
    datagrams = udp_datagrams(n_records)
    session = ("udp", "192.0.2.1", 4739)
    sessions = [session] * len(datagrams)
    saved = flowplan._native
    if not use_native:
        flowplan._native = None
    try:
        best = best_cpu = None
        for _ in range(3):
            decoder = Decoder()
            decoder.decode_datagrams(datagrams[:4], sessions[:4], now=0.0)
            start, cpu_start = time.perf_counter(), time.process_time()
            if burst:
                parts = [
                    decoder.decode_datagrams(
                        datagrams[k : k + burst], sessions[k : k + burst], now=1.0
                    ).flows
                    for k in range(0, len(datagrams), burst)
                ]
            else:
                parts = [decoder.decode_message(d, session, now=1.0).flows for d in datagrams]
            flows = flowplan.concat_flows(parts)
            elapsed = time.perf_counter() - start
            cpu = time.process_time() - cpu_start
            best = elapsed if best is None else min(best, elapsed)
            best_cpu = cpu if best_cpu is None else min(best_cpu, cpu)
            assert len(flows) == n_records and not any(
                k.startswith("error_") for k in decoder.counters
            )
    finally:
        flowplan._native = saved
    return {
        "records": n_records,
        "message_size": 1400,
        "messages": len(datagrams),
        "path": ("native" if use_native else "numpy")
        + (f", decode_datagrams burst {burst}" if burst else ", decode_message each")
        + ", templates in every datagram",
        "seconds": round(best, 4),
        "records_per_second": round(n_records / best),
        "cpu_seconds": round(best_cpu, 4),
        "records_per_cpu_second": round(n_records / best_cpu),
    }


def run(quick: bool) -> dict:
    """Figures for file-sized and UDP-sized messages, native and numpy paths."""
    n = 100_000 if quick else 1_000_000
    results = []
    if flowplan._native is not None:
        results.append(measure(n, 65_000, True))
        results.append(measure(n // 4, 1_400, True))
        results.append(measure_udp(n // 10, 0, True))
        for burst in (16, 64, 256):
            results.append(measure_udp(n // 4, burst, True))
    results.append(measure(n // 10, 65_000, False))
    results.append(measure_udp(n // 20, 64, False))
    return {"sample": str(SAMPLE.name), "results": results}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))
