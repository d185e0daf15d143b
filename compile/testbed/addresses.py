"""Addresses of the lab: the devices' private network, the remote servers they talk to,
and the local multicast/broadcast groups. IPv4 everywhere, as in the paper's data.
"""

import ipaddress

import numpy as np

from .table import name_seed

LAN_PREFIX = int(ipaddress.IPv4Address("192.168.10.0"))
GATEWAY = LAN_PREFIX + 1
PHONE = LAN_PREFIX + 200
DEVICE_BASE = LAN_PREFIX + 10
GATEWAY_MAC = 0x021A11FF0001
PHONE_MAC = 0x021A11FF00C8
BROADCAST_MAC = 0xFFFFFFFFFFFF

RESOLVERS = ("8.8.8.8", "8.8.4.4", "1.1.1.1", "210.196.3.183")
TIMESERVERS = ("133.243.238.163", "133.243.238.164", "216.239.35.0", "17.253.68.125")
MULTICAST = {"mdns": "224.0.0.251", "ssdp": "239.255.255.250", "igmp": "224.0.0.22"}
#: First octets of the cloud ranges devices reach (all public).
CLOUD_FIRST_OCTETS = (13, 18, 23, 34, 35, 52, 54, 104, 106, 133, 150, 157, 183, 202, 210)
POOL = 3


def v4(text: str) -> int:
    """An IPv4 address as an integer."""
    return int(ipaddress.IPv4Address(text))


def cloud_pool(device: str, binding: str) -> np.ndarray:
    """``POOL`` stable public addresses for one device's service."""
    rng = np.random.default_rng(name_seed("cloud", device, binding))
    first = rng.choice(CLOUD_FIRST_OCTETS)
    rest = rng.integers(1, 255, size=(POOL, 3))
    rest[:, 0] = rest[0, 0]
    rest[:, 1] = rest[0, 1]
    return (first << 24) + (rest[:, 0] << 16) + (rest[:, 1] << 8) + rest[:, 2]


def multicast_mac(addr: np.ndarray) -> np.ndarray:
    """The Ethernet group address of IPv4 multicast addresses (01:00:5e + low 23 bits)."""
    return 0x01005E000000 + (addr.astype(np.uint64) & np.uint64(0x7FFFFF))


def fill_v4(column: np.ndarray, addr: np.ndarray) -> None:
    """Write IPv4 integers into a flow table address column (IPv4-mapped IPv6)."""
    column[:, :10] = 0
    column[:, 10:12] = 0xFF
    be = addr.astype(">u4").view(np.uint8).reshape(-1, 4)
    column[:, 12:] = be
