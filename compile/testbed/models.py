"""Packet-level service models: how many packets each direction of a flow carries, their
payload sizes and the gaps between them.

A ``ServiceModel`` describes one kind of flow (a DNS lookup, a TLS keep-alive, a camera's
relay session...). Devices bind models in ``devices.py``, possibly overriding fields, and
``packets.py`` samples packets from them. Sizes are payload octets (after the IP and
transport headers), gaps are milliseconds. Shared models (DNS, NTP, TLS to cloud
front-ends) are what makes classes overlap, as they do in the paper's data.
"""

from dataclasses import dataclass, replace

PROTO_ICMP = 1
PROTO_IGMP = 2
PROTO_TCP = 6
PROTO_UDP = 17

#: Where the responder of a flow lives: the remote kinds leave the home, the rest do not.
DESTINATIONS = (
    "cloud",  # the vendor's servers, a public address per device and service
    "resolver",  # a public DNS resolver
    "timeserver",  # a public NTP server
    "mdns",  # 224.0.0.251
    "ssdp",  # 239.255.255.250
    "igmp",  # 224.0.0.22
    "broadcast",  # 255.255.255.255
    "linklocal",  # 169.254/16
    "lan",  # another host of the home's private network
)
REMOTE_DESTINATIONS = ("cloud", "resolver", "timeserver")


@dataclass(frozen=True)
class Direction:
    """Packets of one direction: count, first and later payloads, gaps."""

    packets: tuple[float, float, int, int] = (1, 0.0, 1, 1)  # median, sigma, min, max
    first: tuple[float, float] = (40, 4)  # first non-empty payload: mean, sd
    size: tuple[float, float] = (40, 4)  # later non-empty payloads: mean, sd
    empty: float = 0.0  # chance a later packet carries no payload (a bare ACK)
    bulk: float = 0.0  # chance a later packet is a full segment
    gap: tuple[float, float] = (50, 0.5)  # gap between packets: median ms, sigma


@dataclass(frozen=True)
class ServiceModel:
    """One kind of flow between a device and a responder."""

    proto: int
    ports: tuple[int, ...]
    fwd: Direction
    rev: Direction
    destination: str = "cloud"
    rtt: float = 30.0  # ms from the first forward packet to the first reverse one
    source_port: int = 0  # 0: an ephemeral port


def tweak(model: ServiceModel, **changes) -> ServiceModel:
    """A copy of ``model``; keys ``fwd_*``/``rev_*`` change that direction's fields."""
    fwd = {k[4:]: v for k, v in changes.items() if k.startswith("fwd_")}
    rev = {k[4:]: v for k, v in changes.items() if k.startswith("rev_")}
    rest = {k: v for k, v in changes.items() if k[:4] not in ("fwd_", "rev_")}
    return replace(model, fwd=replace(model.fwd, **fwd), rev=replace(model.rev, **rev), **rest)


def _d(pk, first, size=None, empty=0.0, bulk=0.0, gap=(50, 0.5)) -> Direction:
    if not isinstance(pk, tuple):
        pk = (pk, 0.0, pk, pk)
    return Direction(pk, first, size or first, empty, bulk, gap)


def _tls(fwd_pk, rev_pk, fwd_size, rev_size, bulk=0.0, gap=(120, 0.8), port=443, **kw):
    """A TLS session: ClientHello, a certificate chain back, then records both ways."""
    return ServiceModel(
        PROTO_TCP,
        (port,),
        _d(fwd_pk, (517, 6), fwd_size, empty=0.45, gap=gap),
        _d(rev_pk, (900, 15), rev_size, empty=0.15, bulk=bulk, gap=gap),
        **kw,
    )


MODELS: dict[str, ServiceModel] = {
    # Name lookups and time: nearly the same for every device.
    "dns": ServiceModel(
        PROTO_UDP, (53,), _d(1, (34, 0.6)), _d(1, (90, 2.5)), destination="resolver", rtt=8
    ),
    "ntp": ServiceModel(
        PROTO_UDP, (123,), _d(1, (48, 0)), _d(1, (48, 0)), destination="timeserver", rtt=20
    ),
    "ping": ServiceModel(
        PROTO_ICMP,
        (2048,),
        _d((2, 0.4, 1, 4), (56, 0), gap=(1000, 0.05)),
        _d((2, 0.4, 1, 4), (56, 0), gap=(1000, 0.05)),
    ),
    # Cloud sessions over TLS.
    "tls_short": _tls((9, 0.3, 6, 16), (8, 0.3, 5, 14), (120, 60), (180, 90)),
    "tls_api": _tls((14, 0.5, 7, 40), (14, 0.5, 6, 40), (300, 150), (400, 250), bulk=0.1),
    "tls_keepalive": _tls((18, 0.4, 8, 60), (16, 0.4, 8, 60), (45, 10), (45, 10), gap=(8000, 0.6)),
    "tls_download": _tls(
        (30, 0.5, 10, 120), (60, 0.6, 15, 400), (90, 30), (900, 300), bulk=0.75, gap=(15, 1.0)
    ),
    # Plain HTTP.
    "http_get": ServiceModel(
        PROTO_TCP,
        (80,),
        _d((6, 0.2, 5, 10), (220, 8), (0, 0), empty=0.95, gap=(40, 0.6)),
        _d((6, 0.4, 4, 20), (600, 40), (1000, 300), empty=0.2, bulk=0.5, gap=(20, 0.8)),
    ),
    "http_check": ServiceModel(
        PROTO_TCP,
        (80,),
        _d((5, 0.1, 5, 7), (90, 4), (0, 0), empty=1.0, gap=(30, 0.4)),
        _d((4, 0.1, 4, 6), (160, 4), (0, 0), empty=1.0, gap=(30, 0.4)),
    ),
    # Other UDP: NAT traversal, peer-to-peer relays, QUIC.
    "stun": ServiceModel(
        PROTO_UDP, (3478,), _d((2, 0.4, 1, 4), (28, 1)), _d((2, 0.4, 1, 4), (72, 3))
    ),
    "p2p_keepalive": ServiceModel(
        PROTO_UDP,
        (32100,),
        _d((6, 0.5, 2, 30), (44, 2), gap=(15000, 0.3)),
        _d((6, 0.5, 1, 30), (44, 2), gap=(15000, 0.3)),
    ),
    "quic": ServiceModel(
        PROTO_UDP,
        (443,),
        _d((12, 0.6, 4, 80), (1250, 20), (90, 60), gap=(40, 1.0)),
        _d((14, 0.6, 3, 120), (1200, 30), (700, 400), bulk=0.3, gap=(30, 1.0)),
    ),
    # Other TCP: MQTT over TLS, XMPP and vendor ports.
    "mqtt_tls": _tls(
        (20, 0.4, 8, 60), (18, 0.4, 8, 60), (60, 15), (50, 15), gap=(30000, 0.4), port=8883
    ),
    # Local traffic: discovery, multicast membership, the app on a phone.
    "mdns": ServiceModel(PROTO_UDP, (5353,), _d(1, (120, 40)), _d(0, (0, 0)), "mdns"),
    "ssdp": ServiceModel(
        PROTO_UDP, (1900,), _d((3, 0.3, 1, 6), (170, 20), gap=(100, 0.3)), _d(0, (0, 0)), "ssdp"
    ),
    "igmp": ServiceModel(PROTO_IGMP, (0,), _d(1, (8, 0)), _d(0, (0, 0)), "igmp"),
    "dhcp": ServiceModel(
        PROTO_UDP, (67,), _d(1, (300, 0)), _d(0, (0, 0)), "broadcast", source_port=68
    ),
    "discovery_bcast": ServiceModel(
        PROTO_UDP,
        (20002,),
        _d((2, 0.3, 1, 4), (60, 10), gap=(500, 0.3)),
        _d(0, (0, 0)),
        "broadcast",
    ),
    "linklocal_probe": ServiceModel(
        PROTO_UDP, (5355,), _d(1, (30, 4)), _d(0, (0, 0)), "linklocal"
    ),
    "lan_app": ServiceModel(
        PROTO_TCP,
        (8080,),
        _d((8, 0.4, 4, 30), (200, 80), (150, 80), empty=0.4, gap=(60, 0.8)),
        _d((8, 0.4, 4, 30), (300, 150), (500, 300), empty=0.3, bulk=0.2, gap=(60, 0.8)),
        "lan",
        rtt=3,
    ),
    "lan_dns": ServiceModel(PROTO_UDP, (53,), _d(1, (34, 6)), _d(1, (90, 30)), "lan", rtt=2),
}
