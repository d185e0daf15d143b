"""Which home each flow belongs to: its end inside the subscriber prefixes.

A flow's home is its initiator's (source) address when that lies in one of the configured
subscriber prefixes, widened to the home block (a /32 for IPv4, a /56 for IPv6 by
default). Flows whose initiator is outside but whose responder is inside were started from
the Internet (port forwards, scans); they are counted apart and not attributed to a home,
as are flows with neither end inside. The work is vectorised over the flow table; Python
code runs once per distinct home in a batch, to find or create its slot.

A home's id in summaries is its subscriber id from the optional table (CSV lines
``prefix,subscriber_id``), or else a keyed hash (HMAC-SHA256) of its prefix, so the
store never sees a subscriber's address.
"""

import csv
import hmac
import ipaddress
import logging
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path

import numpy as np

from agent.errors import ConfigError

log = logging.getLogger(__name__)

_ALL_ONES = (1 << 64) - 1


def _split(value: int) -> tuple[int, int]:
    return value >> 64, value & _ALL_ONES


def _mask(length: int) -> int:
    return ((1 << 128) - 1) ^ ((1 << (128 - length)) - 1)


def _as_128(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[int, int]:
    """A prefix as (128-bit value, length) in the flow table's IPv4-mapped space."""
    if network.version == 4:
        return (0xFFFF << 32) | int(network.network_address), 96 + network.prefixlen
    return int(network.network_address), network.prefixlen


def address_words(octets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (n, 16) address octets as two big-endian uint64 columns (high, low)."""
    words = np.ascontiguousarray(octets).view(">u8").astype(np.uint64)
    return words[:, 0], words[:, 1]


def _in_prefixes(hi, lo, prefixes) -> np.ndarray:
    inside = np.zeros(len(hi), dtype=bool)
    for value, length in prefixes:
        net_hi, net_lo = _split(value)
        mask_hi, mask_lo = (np.uint64(m) for m in _split(_mask(length)))
        inside |= ((hi & mask_hi) == np.uint64(net_hi)) & ((lo & mask_lo) == np.uint64(net_lo))
    return inside


@dataclass
class Assignment:
    """Per flow: the home slot (-1 when not attributed), plus why flows were left out."""

    slot: np.ndarray
    outside: int
    inbound: int
    over_cap: int


class SubscriberTable:
    """Subscriber ids by prefix, read from ``prefix,subscriber_id`` CSV lines."""

    def __init__(self, entries: dict[tuple[int, int], str]):
        self.entries = entries
        self.lengths = sorted({length for length, _ in entries}, reverse=True)

    @classmethod
    def read(cls, path: Path) -> "SubscriberTable":
        """Parse the table; a bad line is a ``ConfigError`` naming file and line."""
        entries = {}
        try:
            with open(path, newline="") as f:
                for number, row in enumerate(csv.reader(f), start=1):
                    if not row or row[0].lstrip().startswith("#"):
                        continue
                    if number == 1 and row[0].strip().lower() == "prefix":
                        continue
                    if len(row) != 2 or not row[1].strip():
                        raise ConfigError(f"{path}:{number}: expected prefix,subscriber_id")
                    try:
                        network = ipaddress.ip_network(row[0].strip(), strict=True)
                    except ValueError as exc:
                        raise ConfigError(f"{path}:{number}: bad prefix ({exc})") from None
                    value, length = _as_128(network)
                    entries[(length, value)] = row[1].strip()
        except OSError as exc:
            raise ConfigError(f"homes.subscribers: cannot read {path}: {exc.strerror}") from exc
        return cls(entries)

    def lookup(self, value: int, length: int) -> str | None:
        """The id of the longest table prefix covering the home block, if any."""
        for table_length in self.lengths:
            if table_length <= length:
                found = self.entries.get((table_length, value & _mask(table_length)))
                if found is not None:
                    return found
        return None


class Homes:
    """Maps flows to home slots 0..max_homes-1 and each slot to its id for summaries.

    At the cap, flows of homes not yet seen are counted (``over_cap``) and left out;
    homes already known keep being tracked. Slots live as long as the process.
    """

    def __init__(
        self,
        prefixes,
        *,
        hash_key: bytes,
        home_prefix_v4: int = 32,
        home_prefix_v6: int = 56,
        max_homes: int = 65536,
        subscribers: SubscriberTable | None = None,
    ):
        self.prefixes = [_as_128(ipaddress.ip_network(p)) for p in prefixes]
        self.hash_key = hash_key
        self.length_v4 = 96 + home_prefix_v4
        self.length_v6 = home_prefix_v6
        self.mask_v4 = tuple(np.uint64(w) for w in _split(_mask(self.length_v4)))
        self.mask_v6 = tuple(np.uint64(w) for w in _split(_mask(self.length_v6)))
        self.max_homes = max_homes
        self.subscribers = subscribers
        self.slots: dict[tuple[int, int], int] = {}
        self.ids: list[str] = []
        self.unmapped = 0

    def assign(self, flows: np.ndarray) -> Assignment:
        """The home slot of every flow, -1 where the flow has no home here."""
        src_hi, src_lo = address_words(flows["sourceAddress"])
        dst_hi, dst_lo = address_words(flows["destinationAddress"])
        src_in = _in_prefixes(src_hi, src_lo, self.prefixes)
        dst_in = _in_prefixes(dst_hi, dst_lo, self.prefixes)
        slot = np.full(len(flows), -1, dtype=np.int32)
        inbound = int(np.count_nonzero(~src_in & dst_in))
        outside = int(np.count_nonzero(~src_in & ~dst_in))
        if not src_in.any():
            return Assignment(slot, outside, inbound, 0)

        rows = np.flatnonzero(src_in)
        v4 = flows["ipVersion"][rows] == 4
        mask_hi = np.where(v4, self.mask_v4[0], self.mask_v6[0])
        mask_lo = np.where(v4, self.mask_v4[1], self.mask_v6[1])
        blocks = np.stack([src_hi[rows] & mask_hi, src_lo[rows] & mask_lo], axis=1)
        unique, inverse = np.unique(blocks, axis=0, return_inverse=True)

        unique_slots = np.empty(len(unique), dtype=np.int32)
        for i, (hi, lo) in enumerate(unique.tolist()):
            unique_slots[i] = self._slot(hi, lo)
        slot[rows] = unique_slots[inverse.ravel()]
        over_cap = int(np.count_nonzero(slot[rows] < 0))
        return Assignment(slot, outside, inbound, over_cap)

    def _slot(self, hi: int, lo: int) -> int:
        found = self.slots.get((hi, lo))
        if found is not None:
            return found
        if len(self.ids) >= self.max_homes:
            return -1
        value = (hi << 64) | lo
        length = self.length_v4 if hi == 0 and (lo >> 32) == 0xFFFF else self.length_v6
        self.slots[(hi, lo)] = len(self.ids)
        self.ids.append(self._home_id(value, length))
        return len(self.ids) - 1

    def _home_id(self, value: int, length: int) -> str:
        if self.subscribers is not None:
            found = self.subscribers.lookup(value, length)
            if found is not None:
                return found
            self.unmapped += 1
        text = prefix_text(value, length).encode()
        return hmac.new(self.hash_key, text, sha256).hexdigest()[:32]

    def __len__(self) -> int:
        return len(self.ids)


def prefix_text(value: int, length: int) -> str:
    """A home block in the mapped space as ordinary CIDR text (``192.0.2.7/32``)."""
    if value >> 32 == 0xFFFF:
        return f"{ipaddress.IPv4Address(value & 0xFFFFFFFF)}/{length - 96}"
    return f"{ipaddress.IPv6Address(value)}/{length}"
