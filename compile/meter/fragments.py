"""IPv4 fragment reassembly as YAF 2.16's fragment table does it (Python fallback).

Fragments are grouped by (addresses, protocol, IP id). The first fragment gives the
datagram its ports, TCP flags and MAC addresses; a datagram is complete once its first
and last fragments are in and the fragments, sorted by offset, leave no gap. The
reassembled datagram is metered at the completing fragment's time, with IP length =
covered length + that fragment's IP header. Its payload, like YAF's, is the covered
length less the transport header only when the completing fragment is the first one
(YAF takes the headers to subtract from the completing fragment's own decode).

Fragments older than the newest fragment are skipped (the fragment table keeps its own
clock); every 5 s of fragment time, datagrams untouched for 30 s are dropped.
"""

from collections import OrderedDict

FRAGMENT_TIMEOUT = 30_000_000_000
PRUNE_DELAY = 5_000_000_000

#: Counters of the fragment table (after the per-record ones).
FRAGMENT_COUNTERS = (
    "fragments",
    "fragment_out_of_sequence",
    "reassembled",
    "reassembled_out_of_sequence",
    "fragments_unassembled",
)


class _Datagram:
    __slots__ = ("first", "flags", "last", "macs", "pieces", "ports", "touched", "vlan")

    def __init__(self, vlan: int, t: int):
        self.pieces: list[tuple[int, int]] = []
        self.first = self.last = False
        self.ports, self.flags, self.macs, self.vlan, self.touched = (0, 0), 0, (0, 0), vlan, t


class FragmentTable:
    """Collects IPv4 fragments; ``add`` returns a reassembled packet tuple when one completes."""

    def __init__(self, counters: dict):
        self.datagrams: OrderedDict[tuple, _Datagram] = OrderedDict()
        self.ctime = self.prune_time = None
        self.counters = counters

    def add(self, t: int, packet: tuple):
        """Take one fragment (a ``decode`` tuple); the completed datagram's tuple, or None."""
        version, proto, sp, dp, vlan, src, dst, iplen, _, flags, smac, dmac, frag = packet
        ipid, offset, more, iphlen, l4hlen = frag
        if self.ctime is not None and t < self.ctime:
            self.counters["fragment_out_of_sequence"] += 1
            return None
        self.ctime = t
        self.counters["fragments"] += 1

        key = (src, dst, proto, ipid)
        datagram = self.datagrams.get(key)
        if datagram is None:
            datagram = self.datagrams[key] = _Datagram(vlan, t)
        else:
            self.datagrams.move_to_end(key)
            datagram.touched = t
        if offset == 0:
            datagram.first = True
            if l4hlen:
                datagram.ports, datagram.flags = (sp, dp), flags
            datagram.macs = (smac, dmac)
        datagram.pieces.append((offset, iplen - iphlen))
        if not more:
            datagram.last = True

        assembled = None
        covered = self._covered(datagram)
        if covered is not None:
            del self.datagrams[key]
            headers = l4hlen if offset == 0 else 0
            if covered + iphlen > 0xFFFF or covered < headers:
                self.counters["fragments_unassembled"] += 1
            else:
                assembled = (
                    version,
                    proto,
                    *datagram.ports,
                    datagram.vlan,
                    src,
                    dst,
                    covered + iphlen,
                    covered - headers,
                    datagram.flags,
                    *datagram.macs,
                    None,
                )
        self._prune()
        return assembled

    @staticmethod
    def _covered(datagram: _Datagram) -> int | None:
        if not (datagram.first and datagram.last):
            return None
        covered = 0
        for offset, length in sorted(datagram.pieces, key=lambda piece: piece[0]):
            if offset > covered:
                return None
            covered = offset + length
        return covered

    def _prune(self) -> None:
        if self.prune_time is not None and self.ctime - self.prune_time <= PRUNE_DELAY:
            return
        self.prune_time = self.ctime
        while self.datagrams:
            key, datagram = next(iter(self.datagrams.items()))
            if self.ctime - datagram.touched <= FRAGMENT_TIMEOUT:
                return
            del self.datagrams[key]
            self.counters["fragments_unassembled"] += 1

    def finish(self) -> None:
        """Drop what never completed, as YAF does at the end of its input."""
        self.counters["fragments_unassembled"] += len(self.datagrams)
        self.datagrams.clear()
