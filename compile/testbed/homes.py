"""The ISP's view: many homes behind NAT, as an edge router would export their flows.

Each home has a public address, a subscriber id, a random subset of the lab's IoT types
(the ground truth of its inventory) and a few general-purpose devices (phones, laptops)
whose flows belong to no IoT class. Only remote flows leave a home; NAT rewrites their
source to the home's public address and port, and no MAC survives. The homes' records
cover the test period (16 March onwards), where a model trained on the lab is used.
"""

import ipaddress
from dataclasses import asdict, dataclass

import numpy as np

from agent.features import remote_mask
from agent.flows import FLOW_DTYPE

from . import addresses as addr
from .calendar import Day
from .devices import DEVICES
from .generate import Lab
from .models import MODELS
from .packets import simulate
from .table import COL, binding_rows

PUBLIC_BASE = int(ipaddress.IPv4Address("106.130.0.0"))
MIN_IOT, MAX_IOT = 2, 8
#: General-purpose devices: their flows per day at scale 1 and service mix.
GENERAL = {
    "phone": (
        1500,
        (("tls_api", 4), ("tls_short", 3), ("quic", 3), ("dns", 3), ("http_get", 1), ("ntp", 0.2)),
    ),
    "laptop": (
        3000,
        (
            ("tls_api", 5),
            ("tls_download", 2),
            ("quic", 3),
            ("dns", 3),
            ("http_get", 1),
            ("ntp", 0.1),
        ),
    ),
    "tablet": (900, (("tls_api", 4), ("tls_download", 2), ("quic", 2), ("dns", 3), ("ntp", 0.1))),
}


@dataclass(frozen=True)
class Home:
    """One subscriber's home and what lives in it."""

    home_id: str
    subscriber_id: str
    public_address: str
    iot_device_types: tuple[str, ...]
    general_purpose: tuple[str, ...]


def make_homes(count: int, seed: int) -> list[Home]:
    """``count`` homes with random inventories, the same for the same seed."""
    rng = np.random.default_rng([seed, 0x401E])
    talking = [i for i, d in enumerate(DEVICES) if not d.local_only]
    homes = []
    for h in range(count):
        k = int(rng.integers(MIN_IOT, MAX_IOT + 1))
        chosen = sorted(rng.choice(talking, size=k, replace=False).tolist())
        general = sorted(rng.choice(list(GENERAL), size=int(rng.integers(1, 4)), replace=False))
        public = str(ipaddress.IPv4Address(PUBLIC_BASE + 256 * h + 17))
        homes.append(
            Home(
                f"home-{h + 1:04d}",
                f"sub-{seed % 1000:03d}{h + 1:05d}",
                public,
                tuple(DEVICES[i].name for i in chosen),
                tuple(general),
            )
        )
    return homes


def _general_flows(home_index: int, home: Home, day: Day, scale: float, seed: int):
    rng = np.random.default_rng([seed, 0x6E6, home_index, day.date.toordinal()])
    params = []
    for name in home.general_purpose:
        per_day, mix = GENERAL[name]
        n = rng.poisson(per_day * scale * day.fraction)
        weights = np.array([w for _, w in mix])
        picks = rng.choice(len(mix), size=n, p=weights / weights.sum())
        rows = np.array(
            [
                row
                for model_name, _ in mix
                for row in binding_rows(
                    f"{home.home_id}/{name}", "general", model_name, MODELS[model_name]
                )
            ]
        )
        variant = rng.integers(0, len(rows) // len(mix), size=n)
        params.append(rows[picks * (len(rows) // len(mix)) + variant])
    if not params:
        return np.zeros(0, dtype=FLOW_DTYPE)
    p = np.concatenate(params)
    stats = simulate(rng, p)
    flows = np.zeros(len(p), dtype=FLOW_DTYPE)
    for key, value in stats.items():
        if key in FLOW_DTYPE.names:
            flows[key] = value
    flows["flowStartMilliseconds"] = rng.integers(day.start_ms, day.end_ms, size=len(p))
    flows["flowEndMilliseconds"] = flows["flowStartMilliseconds"] + stats["duration"]
    flows["ipVersion"] = 4
    flows["protocolIdentifier"] = p[:, COL["proto"]]
    flows["destinationTransportPort"] = p[:, COL["port0"]]
    dst = np.where(
        p[:, COL["port0"]] == 53,
        addr.v4(addr.RESOLVERS[0]),
        addr.v4("142.250.0.0") + rng.integers(1, 65535, size=len(p)),
    )
    dst = np.where(p[:, COL["port0"]] == 123, addr.v4(addr.TIMESERVERS[2]), dst)
    addr.fill_v4(flows["destinationAddress"], dst)
    return flows


def home_day(lab: Lab, home_index: int, home: Home, day: Day) -> np.ndarray:
    """One home's post-NAT records of one day, ordered by flow start."""
    names = [d.name for d in DEVICES]
    only = {names.index(n) for n in home.iot_device_types}
    iot = lab.day(day, only=only, stream=home_index + 1).flows
    iot = iot[remote_mask(iot)]
    general = _general_flows(home_index, home, day, lab.scale, lab.seed)
    flows = np.concatenate([iot, general])

    rng = np.random.default_rng([lab.seed, 0x9A7, home_index, day.date.toordinal()])
    addr.fill_v4(flows["sourceAddress"], np.full(len(flows), addr.v4(home.public_address)))
    has_ports = np.isin(flows["protocolIdentifier"], (6, 17))
    nat_port = rng.integers(1024, 65536, size=len(flows))
    flows["sourceTransportPort"] = np.where(has_ports, nat_port, 0)
    flows["sourceMacAddress"] = 0
    flows["destinationMacAddress"] = 0
    flows["observationDomainId"] = 1
    return flows[np.argsort(flows["flowStartMilliseconds"], kind="stable")]


def homes_manifest(homes: list[Home]) -> list[dict]:
    """The ground truth per home, JSON-ready."""
    return [
        asdict(h)
        | {
            "iot_device_types": list(h.iot_device_types),
            "general_purpose": list(h.general_purpose),
        }
        for h in homes
    ]
