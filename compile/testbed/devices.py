"""The lab's device table: who is there, how busy each device is, which services it uses.

Names and categories follow the paper (Pashamokhtari et al., section III-A) and the
KDDI-IoT-2019 lab it describes; where the paper names fewer than 26 Internet-talking
devices the table adds common devices of such a lab (Echo Dot, Nature Remo, Awair,
Qwatch, Clova, eRemote and a Planex pan-tilt camera stand in for unpublished names).
Rates are remote and local flows per full capture day at scale 1, chosen so that the
totals of Fig. 2 and the share of local flows (about 70%) come out as published.
``remote`` and ``local`` bind service models (``models.py``, ``device_models.py``) with a
weight each; ``interaction`` gives the flows a user session adds on an interaction day
(January and March only) and their mix.
"""

from dataclasses import dataclass

from . import device_models as own
from .models import MODELS, ServiceModel

M = MODELS


@dataclass(frozen=True)
class Device:
    """One device type of the lab and its traffic mix."""

    name: str
    category: str
    remote_per_day: float
    local_per_day: float
    remote: tuple[tuple[str, ServiceModel, float], ...] = ()
    local: tuple[tuple[str, ServiceModel, float], ...] = ()
    interaction: tuple[float, tuple[tuple[str, ServiceModel, float], ...]] = (0.0, ())
    daily_interaction: bool = False  # a user session every January/March day

    @property
    def local_only(self) -> bool:
        """True for the three devices the paper saw with local flows only."""
        return self.remote_per_day == 0 and self.interaction[0] == 0


def _mix(*pairs) -> tuple[tuple[str, ServiceModel, float], ...]:
    """(name or (name, model), weight) pairs -> bindings, weights normalised to 1."""
    total = sum(w for _, w in pairs)
    out = []
    for ref, weight in pairs:
        name, model = (ref, M[ref]) if isinstance(ref, str) else ref
        out.append((name, model, weight / total))
    return tuple(out)


_LOCAL_COMMON = _mix(("mdns", 3), ("ssdp", 2), ("igmp", 1), ("dhcp", 0.3), ("lan_dns", 2))
#: Scales every local rate of the table: local flows are about 70% of all (section III-A).
LOCAL_FACTOR = 1.13


def _local(*extra) -> tuple[tuple[str, ServiceModel, float], ...]:
    base = [((name, model), w * 10) for name, model, w in _LOCAL_COMMON]
    return _mix(*base, *extra)


DEVICES: tuple[Device, ...] = (
    Device(
        "Sony Bravia TV",
        "tv",
        5648,
        9000,
        _mix(
            ("tls_api", 20),
            ("tls_short", 13),
            (own.BRAVIA_CONTENT, 5),
            ("tls_download", 5),
            ("http_get", 8),
            ("http_check", 4),
            ("dns", 25),
            ("ntp", 1),
            (own.HUB_XMPP, 6),
            ("quic", 7),
            ("ping", 6),
        ),
        _local(("lan_app", 4), ("discovery_bcast", 2)),
    ),
    Device(
        "Sony smart speaker",
        "speaker",
        8700,
        10000,
        _mix(
            ("tls_keepalive", 11),
            ("tls_short", 15),
            (own.SPEAKER_PUSH, 4),
            ("http_get", 2),
            ("dns", 17),
            ("ntp", 1),
            (own.SPEAKER_VOICE, 2),
            ("stun", 24),
            ("quic", 20),
            ("ping", 4),
        ),
        _local(("lan_app", 3)),
        (80, _mix(("tls_api", 2), (own.SPEAKER_VOICE, 1))),
    ),
    Device(
        "Panasonic doorphone",
        "doorphone",
        5400,
        6000,
        _mix(
            ("tls_short", 16),
            ("tls_api", 12),
            ("http_get", 5),
            ("dns", 17),
            ("ntp", 2),
            (own.DOORPHONE_SIP, 28),
            ("stun", 16),
            ("ping", 3),
            (own.HUB_XMPP, 1),
        ),
        _local(("lan_app", 2), ("discovery_bcast", 2)),
        (60, _mix((own.CAM_STREAM, 1), ("tls_api", 1))),
    ),
    Device(
        "Google Home",
        "speaker",
        3600,
        9000,
        _mix(
            ("tls_short", 18),
            ("tls_keepalive", 18),
            ("dns", 20),
            ("ntp", 2),
            ("quic", 38),
            ("ping", 4),
        ),
        _local(("lan_app", 3)),
        (80, _mix(("tls_api", 1), ("quic", 2))),
    ),
    Device(
        "Wansview camera",
        "camera",
        2300,
        4000,
        _mix(
            ("tls_short", 22),
            ("http_get", 10),
            ("dns", 18),
            ("ntp", 9),
            ("ping", 4),
            ("p2p_keepalive", 34),
            ("stun", 8),
            (own.HUB_XMPP, 4),
        ),
        _local(("discovery_bcast", 3)),
        (40, _mix((own.CAM_STREAM, 2), ("tls_api", 1))),
    ),
    Device(
        "MCJ room hub",
        "hub",
        900,
        2200,
        _mix(
            ("tls_api", 25),
            ("tls_keepalive", 20),
            ("dns", 30),
            ("ntp", 5),
            ("http_check", 10),
            ("ping", 3),
        ),
        _local(("lan_app", 1)),
    ),
    Device(
        "Fredi camera",
        "camera",
        700,
        2400,
        _mix(("http_get", 30), ("dns", 25), ("ntp", 5), ("p2p_keepalive", 35), ("stun", 5)),
        _local(("discovery_bcast", 4)),
        (20, _mix((own.CAM_STREAM, 1))),
    ),
    Device(
        "JVC Kenwood hub",
        "hub",
        470,
        1400,
        _mix(
            ("tls_short", 30),
            ("tls_keepalive", 15),
            ("dns", 30),
            ("ntp", 9),
            ("ping", 4),
            ("http_check", 15),
        ),
        _local(),
    ),
    Device(
        "Philips Hue bridge",
        "lightbulb",
        380,
        5000,
        _mix(
            ("tls_keepalive", 35),
            ("tls_short", 15),
            ("dns", 30),
            ("ntp", 9),
            ("ping", 4),
            ("http_check", 10),
        ),
        _local(("ssdp", 6)),
        (15, _mix(("tls_api", 1))),
    ),
    Device(
        "Qrio hub",
        "smart lock",
        250,
        300,
        _mix(("tls_short", 50), ("tls_keepalive", 40), ("tls_api", 10)),
        _local(),
    ),
    Device(
        "Amazon Echo Show",
        "speaker",
        600,
        2800,
        _mix(((own.ECHO_CHANNEL), 50), ("tls_short", 15), ("dns", 25), ("ntp", 5), ("ping", 5)),
        _local(("lan_app", 1)),
        (40, _mix(("tls_api", 1), ("tls_download", 1))),
    ),
    Device(
        "Amazon Echo Dot",
        "speaker",
        450,
        2000,
        _mix(("tls_keepalive", 40), ("tls_short", 20), ("dns", 28), ("ntp", 6), ("ping", 6)),
        _local(),
        (40, _mix(("tls_api", 1))),
    ),
    Device(
        "Nature Remo",
        "remote controller",
        260,
        800,
        _mix(("tls_keepalive", 50), ("tls_short", 10), ("dns", 30), ("ntp", 9), ("ping", 4)),
        _local(("lan_app", 1)),
        (10, _mix(("tls_api", 1))),
    ),
    Device(
        "Bitfinder Awair",
        "air quality sensor",
        200,
        600,
        _mix(("tls_api", 40), ("mqtt_tls", 15), ("dns", 35), ("ntp", 9), ("ping", 4)),
        _local(),
        (8, _mix(("tls_api", 1))),
    ),
    Device(
        "Planex outdoor camera",
        "camera",
        320,
        1600,
        _mix(
            ("http_get", 20),
            (own.PLANEX_10001, 30),
            ("dns", 33),
            ("ntp", 9),
            ("ping", 4),
            ("p2p_keepalive", 10),
        ),
        _local(("discovery_bcast", 2)),
        (15, _mix((own.CAM_STREAM, 1))),
    ),
    Device(
        "iRobot Roomba",
        "vacuum cleaner",
        50,
        300,
        _mix((own.ROOMBA_MQTT, 60), ("dns", 25), ("ntp", 9), ("ping", 4), ("tls_short", 10)),
        _local(),
    ),
    Device(
        "Planex UCA01A camera",
        "camera",
        60,
        500,
        _mix((own.UCA01A_RELAY, 65), ("dns", 20), ("ntp", 5), ("http_get", 10)),
        _local(("discovery_bcast", 2)),
    ),
    Device(
        "Planex pan-tilt camera",
        "camera",
        40,
        500,
        _mix(("http_get", 30), ("dns", 35), ("ntp", 9), ("ping", 4), ("p2p_keepalive", 25)),
        _local(("discovery_bcast", 2)),
    ),
    Device(
        "Xiaomi LED",
        "lightbulb",
        30,
        400,
        _mix((own.XIAOMI_CLOUD, 60), ("dns", 30), ("ntp", 9), ("ping", 4)),
        _local(),
    ),
    Device(
        "Sesame access point",
        "smart lock",
        70,
        300,
        _mix(("mqtt_tls", 45), ("http_check", 15), ("dns", 30), ("ntp", 9), ("ping", 4)),
        _local(),
    ),
    Device(
        "Power Elec plug",
        "plug",
        45,
        400,
        _mix((own.PLUG_10001, 45), ("tls_short", 10), ("dns", 35), ("ntp", 9), ("ping", 4)),
        _local(),
    ),
    Device(
        "JVC Kenwood camera",
        "camera",
        25,
        600,
        _mix(("http_get", 35), ("dns", 35), ("ntp", 9), ("ping", 4), ("p2p_keepalive", 20)),
        _local(("discovery_bcast", 2)),
    ),
    Device(
        "I-O Data Qwatch camera",
        "camera",
        35,
        600,
        _mix(
            ("tls_short", 25),
            ("http_get", 20),
            ("dns", 30),
            ("ntp", 9),
            ("ping", 4),
            ("p2p_keepalive", 20),
        ),
        _local(),
    ),
    Device(
        "LINE Clova speaker",
        "speaker",
        65,
        900,
        _mix(
            ("tls_keepalive", 35),
            ("tls_short", 20),
            ("dns", 30),
            ("ntp", 9),
            ("ping", 4),
            ("quic", 10),
        ),
        _local(("lan_app", 1)),
    ),
    Device(
        "LinkJapan eRemote",
        "remote controller",
        28,
        500,
        _mix(("tls_short", 35), ("mqtt_tls", 20), ("dns", 35), ("ntp", 9), ("ping", 4)),
        _local(),
    ),
    Device(
        "Nokia body scale",
        "health",
        0,
        20,
        (),
        _local(),
        (1.75, _mix((own.NOKIA_SYNC, 2), ("dns", 1))),
        daily_interaction=True,
    ),
    Device("Sony camera", "camera", 0, 1800, (), _local(("lan_app", 2), ("discovery_bcast", 3))),
    Device("Planex one-shot camera", "camera", 0, 700, (), _local(("discovery_bcast", 3))),
    Device("LinkJapan eSensor", "sensor", 0, 1200, (), _local(("linklocal_probe", 2))),
)


def mac_of(index: int) -> str:
    """The lab MAC of device ``index`` (locally administered, stable across runs)."""
    return f"02:1a:11:00:{index // 256:02x}:{index % 256:02x}"
