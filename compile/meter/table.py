"""The biflow table in Python: the reference the C engine in ``_meter.c`` must equal.

YAF 2.16's flow table rules, per packet in capture order:

- a packet older than the newest one seen is out of sequence: counted and skipped;
- IPv4 fragments go to the fragment table (``fragments.py``) and the datagrams it
  completes are metered like packets;
- the packet's key is looked up, then its reverse (source and destination swapped, ports
  too except for ICMP, whose type/code stays in the destination port); a hit on the
  reverse key makes the packet part of that flow's reverse direction;
- a flow whose start is more than the active timeout before the packet is closed (reason
  active), else one whose last packet is more than the idle timeout before it (reason
  idle); either way the packet starts a new flow, in its own direction;
- a new flow takes its MAC addresses from its first packet;
- TCP: RST closes the flow; so do FIN in both directions each acknowledged by the
  other side (reason end of flow), after the packet is counted;
- YAF reads its capture 64 records at a time and after each batch flushes the table:
  when 5 s of capture time have passed since the last flush, or 2500 flows closed since,
  it closes every flow idle for more than the idle timeout (reason idle). The batches
  are simulated record for record, because which of idle and active a flow ends with
  depends on them;
- at the end of the capture, flows idle for more than the idle timeout close as idle,
  the rest as forced.

Statistics follow YAF's per-packet updates: gaps per direction are the time since that
direction's previous packet, in milliseconds truncated; payload bits of
firstEightNonEmptyPacketDirections are set with YAF's own shift (a 32-bit shift, so the
count wraps at 32).
"""

from collections import OrderedDict

import numpy as np

from compile.meter import decode as dec
from compile.meter.fragments import FRAGMENT_COUNTERS, FragmentTable
from compile.meter.records import (
    END_ACTIVE,
    END_CLOSED,
    END_FORCED,
    END_IDLE,
    KEPT,
    LARGE_PAYLOAD,
    RAW_DTYPE,
    SMALL_PAYLOAD,
)

TCP_FIN, TCP_RST, TCP_ACK = 0x01, 0x04, 0x10
STATE_RST, STATE_FFIN, STATE_RFIN, STATE_FFINACK, STATE_RFINACK = 1, 2, 4, 8, 16
STATE_ALL_FIN = STATE_FFIN | STATE_RFIN | STATE_FFINACK | STATE_RFINACK

#: YAF's capture loop: records per batch, and when a batch's end flushes idle flows.
BATCH = 64
FLUSH_DELAY = 5_000_000_000
FLUSH_PENDING = 2500


class _Direction:
    __slots__ = (
        "aitime",
        "first",
        "ia",
        "large",
        "ltime",
        "maxsize",
        "nonempty",
        "oct",
        "payoct",
        "pkt",
        "psize",
        "small",
    )

    def __init__(self):
        self.pkt = self.oct = self.payoct = self.aitime = 0
        self.nonempty = self.small = self.large = self.first = self.maxsize = 0
        self.ia, self.psize, self.ltime = [], [], None

    def row(self) -> tuple:
        ia = self.ia + [0] * (KEPT - len(self.ia))
        psize = self.psize + [0] * (KEPT - len(self.psize))
        return (
            self.pkt,
            self.oct,
            self.payoct,
            self.aitime,
            self.nonempty,
            self.small,
            self.large,
            self.first,
            self.maxsize,
            ia,
            psize,
        )


class _Flow:
    __slots__ = ("dmac", "end", "fwd", "key", "pktdir", "rev", "smac", "start", "state")

    def __init__(self, key: tuple, t: int, smac: int, dmac: int):
        self.key, self.start, self.end = key, t, t
        self.smac, self.dmac = smac, dmac
        self.state = self.pktdir = 0
        self.fwd, self.rev = _Direction(), _Direction()


def _reverse(key: tuple) -> tuple:
    version, proto, sp, dp, vlan, src, dst = key
    if proto in (dec.PROTO_ICMP, dec.PROTO_ICMP6):
        return (version, proto, sp, dp, vlan, dst, src)
    return (version, proto, dp, sp, vlan, dst, src)


class PyMeter:
    """Flow table fed with packet chunks; closed flows come out of ``drain()``."""

    def __init__(self, idle_ns: int, active_ns: int):
        self.idle, self.active = idle_ns, active_ns
        self.flows: OrderedDict[tuple, _Flow] = OrderedDict()
        self.closed: list[tuple] = []
        self.ctime = None
        self.flush_time = None
        self.batch = self.pending = 0
        self.counters = {name: 0 for name in dec.DROP_REASONS + ("out_of_sequence",)}
        self.counters.update({name: 0 for name in FRAGMENT_COUNTERS})
        self.fragments = FragmentTable(self.counters)

    def feed(self, buf, ts_ns, offset, caplen, linktype) -> None:
        """Decode and meter one chunk of packet records."""
        counters = self.counters
        for t, off, n, lt in zip(
            ts_ns.tolist(), offset.tolist(), caplen.tolist(), linktype.tolist()
        ):
            packet = dec.decode(buf, off, n, lt)
            if isinstance(packet, int):
                counters[dec.DROP_REASONS[packet]] += 1
            elif packet[-1] is not None:
                whole = self.fragments.add(t, packet)
                if whole is not None:
                    self._accept(t, whole, "reassembled")
            else:
                self._accept(t, packet, "metered")
            self.batch += 1
            if self.batch == BATCH:
                self._flush()

    def _accept(self, t: int, packet: tuple, counter: str) -> None:
        if self.ctime is not None and t < self.ctime:
            key = "out_of_sequence" if counter == "metered" else counter + "_out_of_sequence"
            self.counters[key] += 1
            return
        self.counters[counter] += 1
        self.ctime = t
        self._packet(t, packet)

    def _flush(self) -> None:
        self.batch = 0
        if (
            self.flush_time is not None
            and self.ctime - self.flush_time <= FLUSH_DELAY
            and self.pending < FLUSH_PENDING
        ):
            return
        self.flush_time = self.ctime
        self._expire()
        self.pending = 0

    def _expire(self) -> None:
        flows = self.flows
        while flows:
            flow = next(iter(flows.values()))
            if self.ctime - flow.end <= self.idle:
                return
            self._close(flow, END_IDLE)

    def _close(self, flow: _Flow, reason: int) -> None:
        self.pending += 1
        del self.flows[flow.key]
        version, proto, sp, dp, vlan, src, dst = flow.key
        self.closed.append(
            (
                flow.start,
                flow.end,
                flow.smac,
                flow.dmac,
                list(src),
                list(dst),
                sp,
                dp,
                vlan,
                proto,
                version,
                reason,
                flow.pktdir,
                [0] * 6,
                flow.fwd.row(),
                flow.rev.row(),
            )
        )

    def _packet(self, t: int, packet: tuple) -> None:
        version, proto, sp, dp, vlan, src, dst, iplen, datalen, flags, smac, dmac, _ = packet
        key = (version, proto, sp, dp, vlan, src, dst)
        flow, reverse = self.flows.get(key), False
        if flow is None:
            flow = self.flows.get(_reverse(key))
            reverse = flow is not None
        if flow is not None and t - flow.start > self.active:
            self._close(flow, END_ACTIVE)
            flow = None
        elif flow is not None and t - flow.end > self.idle:
            self._close(flow, END_IDLE)
            flow = None
        if flow is None:
            flow, reverse = _Flow(key, t, smac, dmac), False
            self.flows[key] = flow
        d = flow.rev if reverse else flow.fwd

        if proto == dec.PROTO_TCP:
            if reverse:
                if flags & TCP_FIN:
                    flow.state |= STATE_RFIN
                if flow.state & STATE_FFIN and flags & TCP_ACK:
                    flow.state |= STATE_RFINACK
            else:
                if flags & TCP_FIN:
                    flow.state |= STATE_FFIN
                if flow.state & STATE_RFIN and flags & TCP_ACK:
                    flow.state |= STATE_FFINACK
            if flags & TCP_RST:
                flow.state |= STATE_RST

        d.oct += iplen
        d.pkt += 1
        flow.end = t
        gap = 0
        if d.ltime is not None:
            gap = ((t - d.ltime) // 1_000_000) & 0xFFFFFFFF
            d.aitime += gap
        if 2 <= d.pkt <= KEPT + 1:
            d.ia.append(gap)
        d.ltime = t
        if datalen:
            if reverse:
                shift = (flow.fwd.nonempty + flow.rev.nonempty) & 31
                flow.pktdir |= (1 << shift) & 0xFF
            if d.nonempty < KEPT:
                d.psize.append(datalen)
            d.nonempty += 1
            if datalen < SMALL_PAYLOAD:
                d.small += 1
            elif datalen > LARGE_PAYLOAD:
                d.large += 1
            d.payoct += datalen
            if d.first == 0:
                d.first = datalen
            d.maxsize = max(d.maxsize, datalen)

        if flow.state & STATE_RST or flow.state & STATE_ALL_FIN == STATE_ALL_FIN:
            self._close(flow, END_CLOSED)
        else:
            self.flows.move_to_end(flow.key)

    def finish(self) -> None:
        """Close every open flow, as YAF does at the end of its input."""
        if self.batch:
            self._flush()
        self.fragments.finish()
        if self.ctime is not None:
            self._expire()
        while self.flows:
            self._close(next(iter(self.flows.values())), END_FORCED)

    def drain(self) -> np.ndarray:
        """The flows closed since the last call, as ``RAW_DTYPE`` rows."""
        rows, self.closed = self.closed, []
        return np.array(rows, dtype=RAW_DTYPE) if rows else np.zeros(0, RAW_DTYPE)
