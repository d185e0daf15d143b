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
from agent.kernels import buffer
from agent.kernels import kernels as _kernels

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
    words = np.ascontiguousarray(octets).view(">u8")
    return words[:, 0].astype(np.uint64), words[:, 1].astype(np.uint64)


def _in_prefixes(hi, lo, prefixes) -> np.ndarray:
    inside = None
    for value, length in prefixes:
        net_hi, net_lo = (np.uint64(w) for w in _split(value))
        mask_hi, mask_lo = _split(_mask(length))
        here = (hi if mask_hi == _ALL_ONES else hi & np.uint64(mask_hi)) == net_hi
        if mask_lo:
            here &= (lo if mask_lo == _ALL_ONES else lo & np.uint64(mask_lo)) == net_lo
        inside = here if inside is None else inside | here
    return inside if inside is not None else np.zeros(len(hi), dtype=bool)


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


class _Index:
    """64-bit home block keys and their slots in an open-addressing hash table (linear
    probing), searched a whole batch at a time.

    An IPv4 block fits its low word, an IPv6 block of /64 or shorter its high word, so
    one exact 64-bit key per family suffices. A lookup costs about one gather per key
    where a binary search over sorted keys cost 14 dependent ones (0.07 us a key at
    20,000 homes). Keys refused at the cap are not kept, so they are retried; the table
    never loses keys, so a key sits at most ``probes - 1`` places after its hash.
    """

    MIN_SIZE = 1024
    _MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd

    def __init__(self):
        self.keys = np.empty(0, dtype=np.uint64)
        self.slots = np.empty(0, dtype=np.int32)
        self._table(self.MIN_SIZE)

    def _table(self, size: int) -> None:
        self.size = size
        self.shift = np.uint64(64 - (size.bit_length() - 1))
        self.table_keys = np.zeros(size, dtype=np.uint64)
        self.table_slots = np.full(size, -1, dtype=np.int32)
        self.probes = 0

    def _home(self, keys: np.ndarray) -> np.ndarray:
        """Each key's first table position (multiplicative hashing: the top bits)."""
        return (np.multiply(keys, self._MULTIPLIER) >> self.shift).astype(np.intp)

    def find(self, keys: np.ndarray, *, native: bool = True) -> np.ndarray:
        """Slot per key; -1 for keys not (or not yet) given a slot (probed in C by
        ``agent._kernels`` when it is built)."""
        out = np.full(len(keys), -1, dtype=np.int32)
        if len(self.keys) == 0 or len(keys) == 0:
            return out
        keys = np.asarray(keys, dtype=np.uint64)
        if native and _kernels is not None:
            _kernels.lib.iw_find(
                buffer(keys), len(keys), buffer(self.table_keys), buffer(self.table_slots),
                self.size, int(self.shift), int(self._MULTIPLIER), buffer(out),
            )  # fmt: skip
            return out
        todo = np.arange(len(keys))
        at = self._home(keys)
        for _ in range(self.probes):
            slot = self.table_slots[at]
            used = slot >= 0
            hit = used & (self.table_keys[at] == keys[todo])
            out[todo[hit]] = slot[hit]
            more = used & ~hit
            if not more.any():
                break
            todo, at = todo[more], (at[more] + 1) & (self.size - 1)
        return out

    def add(self, keys: np.ndarray, slots: np.ndarray) -> None:
        """Remember new keys (not already held); keys refused at the cap are not kept."""
        kept = slots >= 0
        keys = np.asarray(keys, dtype=np.uint64)[kept]
        slots = np.asarray(slots, dtype=np.int32)[kept]
        self.keys = np.concatenate([self.keys, keys])
        self.slots = np.concatenate([self.slots, slots])
        if 2 * len(self.keys) > self.size:
            size = self.size
            while 2 * len(self.keys) > size:
                size *= 2
            self._table(size)
            keys, slots = self.keys, self.slots
        self._place(keys, slots)

    def _place(self, keys: np.ndarray, slots: np.ndarray) -> None:
        """Insert keys, all at once: each round, the keys whose position is free take it
        (one per position), the others move one place on."""
        at = self._home(keys)
        todo = np.arange(len(keys))
        rounds = 0
        while len(todo):
            rounds += 1
            free = self.table_slots[at] < 0
            positions, first = np.unique(at[free], return_index=True)
            won = np.flatnonzero(free)[first]
            self.table_keys[positions] = keys[todo[won]]
            self.table_slots[positions] = slots[todo[won]]
            moving = np.ones(len(todo), dtype=bool)
            moving[won] = False
            todo, at = todo[moving], (at[moving] + 1) & (self.size - 1)
        self.probes = max(self.probes, rounds)


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
        self.index_v4 = _Index()
        self.index_v6 = _Index()
        self.ids: list[str] = []
        self.unmapped = 0

    def assign(self, flows: np.ndarray) -> Assignment:
        """The home slot of every flow, -1 where the flow has no home here."""
        src_hi, src_lo = address_words(flows["sourceAddress"])
        src_in = _in_prefixes(src_hi, src_lo, self.prefixes)
        inbound = outside = 0
        all_in = bool(src_in.all())
        if not all_in:
            dst_hi, dst_lo = address_words(flows["destinationAddress"][~src_in])
            dst_in = _in_prefixes(dst_hi, dst_lo, self.prefixes)
            inbound = int(np.count_nonzero(dst_in))
            outside = len(dst_in) - inbound
            if not src_in.any():
                return Assignment(np.full(len(flows), -1, dtype=np.int32), outside, inbound, 0)
            rows = np.flatnonzero(src_in)
            src_hi, src_lo = src_hi[rows], src_lo[rows]
            v4 = flows["ipVersion"][rows] == 4
        else:
            v4 = flows["ipVersion"] == 4

        found = self._find(v4, src_hi, src_lo)
        over_cap = int(np.count_nonzero(found < 0))
        if all_in:
            return Assignment(found, outside, inbound, over_cap)
        slot = np.full(len(flows), -1, dtype=np.int32)
        slot[rows] = found
        return Assignment(slot, outside, inbound, over_cap)

    def _find(self, v4, hi, lo) -> np.ndarray:
        """Slots of source addresses inside the prefixes, by home block."""
        n_v4 = int(np.count_nonzero(v4))
        if n_v4 == len(v4):
            lo = lo & self.mask_v4[1]
            return self._lookup(self.index_v4, lo, hi & self.mask_v4[0], lo)
        if n_v4 == 0 and self.length_v6 <= 64:
            hi = hi & self.mask_v6[0]
            return self._lookup(self.index_v6, hi, hi, lo & self.mask_v6[1])

        hi = hi & np.where(v4, self.mask_v4[0], self.mask_v6[0])
        lo = lo & np.where(v4, self.mask_v4[1], self.mask_v6[1])
        found = np.empty(len(v4), dtype=np.int32)
        found[v4] = self._lookup(self.index_v4, lo[v4], hi[v4], lo[v4])
        v6 = ~v4
        if self.length_v6 <= 64:
            found[v6] = self._lookup(self.index_v6, hi[v6], hi[v6], lo[v6])
        else:
            found[v6] = [self._slot(h, l) for h, l in zip(hi[v6].tolist(), lo[v6].tolist())]
        return found

    def _lookup(self, index: "_Index", keys, hi, lo) -> np.ndarray:
        """Slots of 64-bit block keys; blocks not seen before get new slots first."""
        slots = index.find(keys)
        missing = slots < 0
        if missing.any():
            new_keys, first = np.unique(keys[missing], return_index=True)
            rows = np.flatnonzero(missing)[first]
            made = [self._slot(h, l) for h, l in zip(hi[rows].tolist(), lo[rows].tolist())]
            index.add(new_keys, np.array(made, dtype=np.int32))
            slots[missing] = index.find(keys[missing])
        return slots

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

    def blocks(self) -> np.ndarray:
        """The home blocks in slot order, as (n, 2) uint64 (high, low) words."""
        return np.array(list(self.slots), dtype=np.uint64).reshape(-1, 2)

    def restore(self, blocks: np.ndarray) -> None:
        """Recreate slots for saved home blocks, in order (ids recomputed with today's
        key and table)."""
        for hi, lo in blocks.tolist():
            self._slot(hi, lo)
        hi, lo = blocks[:, 0], blocks[:, 1]
        slots = np.array([self.slots[(h, l)] for h, l in blocks.tolist()], dtype=np.int32)
        v4 = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
        self.index_v4.add(lo[v4], slots[v4])
        if self.length_v6 <= 64:
            self.index_v6.add(hi[~v4], slots[~v4])

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
