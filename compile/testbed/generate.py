"""One capture day of the lab as a pre-NAT flow table, from the device table's models.

Every day has its own random stream (seeded by the run's seed and the date), so days can
be made in any order and the same seed always gives the same records. Flows are made all
at once per day: counts per device, a binding and variant per flow, start times, then
``packets.simulate`` for the statistics and the address columns last.
"""

import datetime as dt
from dataclasses import dataclass

import numpy as np

from agent.flows import FLOW_DTYPE, mac_to_int

from . import addresses as addr
from . import changes
from .calendar import Day
from .devices import DEVICES, LOCAL_FACTOR, mac_of
from .models import DESTINATIONS
from .packets import simulate
from .table import COL, build_table

SERVICES = ("http", "https", "dns", "ntp", "other_tcp", "other_udp", "icmp_igmp")
_HTTP = (80, 8080, 8008, 8888)
_HTTPS = (443, 1443, 8443, 55443)
_HOUR = 3_600_000
#: Flows simulated at once: bounds the memory of a busy day (packet matrices per chunk).
CHUNK = 32_768


@dataclass
class DayFlows:
    """A day's flow table with, per flow, the device, binding and kind that made it."""

    flows: np.ndarray
    device: np.ndarray
    binding: np.ndarray
    kind: np.ndarray


def service_of(flows: np.ndarray) -> np.ndarray:
    """Index into ``SERVICES`` per flow, by Table II's protocol and port rules."""
    proto = flows["protocolIdentifier"]
    ports = (flows["sourceTransportPort"], flows["destinationTransportPort"])
    any_port = lambda values: np.isin(ports[0], values) | np.isin(ports[1], values)
    tcp, udp = proto == 6, proto == 17
    out = np.full(len(flows), SERVICES.index("icmp_igmp"), dtype=np.int8)
    out[tcp] = SERVICES.index("other_tcp")
    out[udp] = SERVICES.index("other_udp")
    out[tcp & any_port(_HTTP)] = SERVICES.index("http")
    out[tcp & any_port(_HTTPS)] = SERVICES.index("https")
    out[udp & any_port((53, 5353))] = SERVICES.index("dns")
    out[udp & any_port((123,))] = SERVICES.index("ntp")
    return out


class Lab:
    """The lab at one scale and seed; ``day(d)`` makes that day's records."""

    def __init__(self, scale: float, seed: int, plug_onset: float = changes.PLUG_ONSET):
        self.scale = scale
        self.seed = seed
        self.plug_onset = plug_onset
        self.table = build_table()
        names = [d.name for d in DEVICES]
        t = self.table
        self.pools = np.stack(
            [addr.cloud_pool(names[d], t.binding_names[b]) for d, b in zip(t.device, t.binding)]
        )
        self.device_address = addr.DEVICE_BASE + np.arange(len(DEVICES), dtype=np.int64)
        self.device_mac = np.array(
            [mac_to_int(mac_of(i)) for i in range(len(DEVICES))], dtype=np.uint64
        )
        planex = names.index(changes.PLANEX_OUTDOOR)
        rows = t.rows(planex, "remote")
        target = rows[[t.binding_names[t.binding[r]] == "udp10001" for r in rows]][0]
        self.plug_target = t.params[target]

    def _counts(self, day: Day, rng, only) -> list[tuple[int, str, int]]:
        out = []
        for d, dev in enumerate(DEVICES):
            if only is not None and d not in only:
                continue
            base = dev.remote_per_day * self.scale * day.fraction
            factor = changes.rate_factor(dev.name, dev.remote_per_day, day.date) if base else 1
            exact = factor != 1 or day.fraction < 1
            remote = round(base * factor) if exact else rng.poisson(base)
            local = rng.poisson(dev.local_per_day * LOCAL_FACTOR * self.scale * day.fraction)
            interacting = day.interaction or (dev.daily_interaction and day.user_month)
            inter = rng.poisson(dev.interaction[0] * self.scale) if interacting else 0
            out += [(d, "remote", remote), (d, "local", local), (d, "interaction", inter)]
        return out

    def _rows_and_starts(self, day: Day, rng, only):
        t = self.table
        rows, starts = [], []
        for d, kind, n in self._counts(day, rng, only):
            if n == 0:
                continue
            candidates = t.rows(d, kind)
            weights = t.weight[candidates] / t.weight[candidates].sum()
            rows.append(rng.choice(candidates, size=n, p=weights))
            if kind == "interaction":
                session = day.start_ms + rng.integers(8 * _HOUR, 22 * _HOUR)
                starts.append(session + rng.integers(0, _HOUR // 3, size=n))
            else:
                starts.append(rng.integers(day.start_ms, day.end_ms, size=n))
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(rows), np.concatenate(starts)

    def _params(self, rows: np.ndarray, date: dt.date) -> np.ndarray:
        t = self.table
        params = t.params[rows].copy()
        for name in (changes.ECHO, changes.PLUG):
            d = [dev.name for dev in DEVICES].index(name)
            for b in np.unique(t.binding[rows][t.device[rows] == d]):
                mask = (t.device[rows] == d) & (t.binding[rows] == b)
                sub = params[mask]
                changes.apply(
                    sub, name, t.binding_names[b], date, self.plug_target, self.plug_onset
                )
                params[mask] = sub
        return params

    def day(self, day: Day, only: set[int] | None = None, stream: int = 0) -> DayFlows:
        """The records of one capture day, ordered by flow start.

        ``only`` restricts the day to some device indices; ``stream`` picks an independent
        random stream (one per home of the ISP view, 0 for the lab).
        """
        rng = np.random.default_rng([self.seed, stream, day.date.toordinal()])
        rows, starts = self._rows_and_starts(day, rng, only)
        params = self._params(rows, day.date)
        chunks = [simulate(rng, params[i : i + CHUNK]) for i in range(0, len(params), CHUNK)]
        stats = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]} if chunks else {}
        flows = np.zeros(len(rows), dtype=FLOW_DTYPE)
        for name, value in stats.items():
            if name in FLOW_DTYPE.names:
                flows[name] = value
        flows["flowStartMilliseconds"] = starts
        flows["flowEndMilliseconds"] = starts + stats.get("duration", 0)
        flows["ipVersion"] = 4
        flows["protocolIdentifier"] = params[:, COL["proto"]]
        self._addresses(flows, rows, params, rng)

        order = np.argsort(flows["flowStartMilliseconds"], kind="stable")
        t = self.table
        return DayFlows(
            flows[order], t.device[rows][order], t.binding[rows][order], t.kind[rows][order]
        )

    def _addresses(self, flows, rows, params, rng) -> None:
        n = len(rows)
        t = self.table
        device = t.device[rows]
        dest = params[:, COL["destination"]].astype(np.int64)
        dst = self.pools[rows, rng.integers(0, addr.POOL, size=n)].astype(np.int64)
        dst_mac = np.full(n, addr.GATEWAY_MAC, dtype=np.uint64)
        picks = {
            "resolver": np.array([addr.v4(a) for a in addr.RESOLVERS]),
            "timeserver": np.array([addr.v4(a) for a in addr.TIMESERVERS]),
        }
        for kind, choices in picks.items():
            m = dest == DESTINATIONS.index(kind)
            dst[m] = choices[rng.integers(0, len(choices), size=m.sum())]
        for kind, group in addr.MULTICAST.items():
            m = dest == DESTINATIONS.index(kind)
            dst[m] = addr.v4(group)
            dst_mac[m] = addr.multicast_mac(dst[m])
        m = dest == DESTINATIONS.index("broadcast")
        dst[m], dst_mac[m] = addr.v4("255.255.255.255"), addr.BROADCAST_MAC
        m = dest == DESTINATIONS.index("linklocal")
        dst[m] = addr.v4("169.254.0.0") + rng.integers(256, 65279, size=m.sum())
        dst_mac[m] = addr.BROADCAST_MAC
        m = dest == DESTINATIONS.index("lan")
        to_phone = params[:, COL["proto"]] == 6
        dst[m] = np.where(to_phone[m], addr.PHONE, addr.GATEWAY)
        dst_mac[m] = np.where(to_phone[m], addr.PHONE_MAC, addr.GATEWAY_MAC)

        addr.fill_v4(flows["sourceAddress"], self.device_address[device])
        addr.fill_v4(flows["destinationAddress"], dst)
        flows["sourceMacAddress"] = self.device_mac[device]
        flows["destinationMacAddress"] = dst_mac

        nports = params[:, COL["nports"]].astype(np.int64)
        which = rng.integers(0, 4, size=n) % nports
        port_cols = params[:, [COL["port0"], COL["port1"], COL["port2"], COL["port3"]]]
        flows["destinationTransportPort"] = port_cols[np.arange(n), which]
        fixed = params[:, COL["source_port"]]
        flows["sourceTransportPort"] = np.where(
            fixed > 0, fixed, rng.integers(32768, 61000, size=n)
        )
        no_ports = ~np.isin(flows["protocolIdentifier"], (6, 17))
        flows["sourceTransportPort"][no_ports] = 0
