"""The lab's device table: who is there, how busy each device is, which services it uses.

Names and categories follow the paper (Pashamokhtari et al., section III-A) and the
KDDI-IoT-2019 lab it describes; where the paper names fewer than 26 Internet-talking
devices the table adds common devices of such a lab. Rates are remote and local flows
per full capture day at scale 1, chosen so that the totals of Fig. 2 and the share of
local flows (about 70%) come out as published. ``remote`` and ``local`` bind service
models (``models.py``) with a weight each; ``interaction`` lists the flows a user session
adds on an interaction day (January and March only).
"""

from dataclasses import dataclass

from .models import MODELS, PROTO_TCP, PROTO_UDP, Direction, ServiceModel, tweak

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


def _local(*extra) -> tuple[tuple[str, ServiceModel, float], ...]:
    base = [((name, model), w * 10) for name, model, w in _LOCAL_COMMON]
    return _mix(*base, *extra)


def _own(name: str, model: ServiceModel) -> tuple[str, ServiceModel]:
    return (name, model)


_SPEAKER_PUSH = _own(
    "push_channel",
    tweak(
        M["tls_keepalive"],
        fwd_packets=(420, 0.2, 250, 800),
        fwd_empty=0.9,
        fwd_gap=(2600, 0.4),
        rev_packets=(650, 0.15, 505, 900),
        rev_size=(34, 6),
        rev_empty=0.02,
        rev_gap=(1800, 0.4),
    ),
)
_BRAVIA_CONTENT = _own(
    "content",
    tweak(
        M["tls_download"],
        rev_packets=(246, 0.05, 214, 270),
        rev_bulk=0.985,
        rev_empty=0.0,
        rev_gap=(4, 0.6),
    ),
)
_DOORPHONE_SIP = _own(
    "sip",
    ServiceModel(
        PROTO_UDP,
        (5060,),
        Direction((2, 0.3, 1, 4), (480, 40), (380, 40), gap=(4000, 0.5)),
        Direction((2, 0.3, 1, 4), (420, 40), (360, 40), gap=(4000, 0.5)),
    ),
)
_SPEAKER_VOICE = _own(
    "voice",
    tweak(M["quic"], ports=(5228,), proto=PROTO_TCP, fwd_empty=0.4, rev_empty=0.3),
)
_ECHO_CHANNEL = _own(
    "alexa_channel",
    tweak(
        M["tls_keepalive"],
        fwd_packets=(16, 0.3, 6, 40),
        fwd_gap=(10500, 0.3),
        rev_packets=(15, 0.3, 6, 40),
        rev_size=(260, 80),
        rev_first=(1380, 40),
        rev_gap=(10500, 0.3),
    ),
)
_PLANEX_10001 = _own(
    "udp10001",
    ServiceModel(
        PROTO_UDP,
        (10001,),
        Direction((4, 0.3, 2, 9), (64, 3), (64, 3), gap=(20000, 0.3)),
        Direction((4, 0.3, 2, 9), (52, 3), (52, 3), gap=(20000, 0.3)),
    ),
)
#: The plug speaks the same protocol on UDP/10001, with fewer packets and longer gaps.
_PLUG_10001 = _own(
    "udp10001",
    tweak(
        _PLANEX_10001[1],
        fwd_packets=(2, 0.2, 1, 3),
        fwd_gap=(70000, 0.3),
        rev_packets=(2, 0.2, 1, 3),
        rev_gap=(70000, 0.3),
    ),
)
_UCA01A_RELAY = _own(
    "relay",
    ServiceModel(
        PROTO_UDP,
        (9001,),
        Direction((150, 0.2, 60, 300), (90, 10), (120, 40), gap=(900, 0.4)),
        Direction((270, 0.15, 205, 420), (80, 10), (110, 40), gap=(500, 0.4)),
    ),
)
_XIAOMI_CLOUD = _own(
    "miio",
    tweak(
        M["mqtt_tls"],
        ports=(8053,),
        fwd_packets=(140, 0.15, 100, 200),
        fwd_gap=(4000, 0.4),
        rev_packets=(145, 0.15, 105, 195),
        rev_gap=(4000, 0.4),
    ),
)
_ROOMBA_MQTT = _own(
    "mqtt",
    tweak(
        M["mqtt_tls"],
        fwd_packets=(150, 0.15, 100, 200),
        fwd_gap=(6000, 0.4),
        rev_packets=(150, 0.15, 105, 195),
        rev_size=(70, 20),
        rev_gap=(6000, 0.4),
    ),
)
_CAM_P2P = _own("p2p", M["p2p_keepalive"])
_CAM_STREAM = _own(
    "stream",
    ServiceModel(
        PROTO_UDP,
        (32100,),
        Direction((60, 0.5, 10, 400), (60, 10), (80, 30), gap=(200, 0.6)),
        Direction((300, 0.5, 40, 2000), (1100, 60), (1100, 200), bulk=0.5, gap=(40, 0.6)),
    ),
)
_HUB_XMPP = _own("xmpp", tweak(M["mqtt_tls"], ports=(5222,)))

DEVICES: tuple[Device, ...] = (
    Device("Sony Bravia TV", "tv", 5648, 9000,
           _mix(("tls_api", 20), ("tls_short", 13), (_BRAVIA_CONTENT, 5), ("tls_download", 5),
                ("http_get", 8), ("http_check", 4), ("dns", 25), ("ntp", 1), (_HUB_XMPP, 6),
                ("quic", 7), ("ping", 6)),
           _local(("lan_app", 4), ("discovery_bcast", 2))),
    Device("Sony smart speaker", "speaker", 8700, 10000,
           _mix(("tls_keepalive", 11), ("tls_short", 15), (_SPEAKER_PUSH, 4), ("http_get", 2),
                ("dns", 17), ("ntp", 1), (_SPEAKER_VOICE, 2), ("stun", 24), ("quic", 20),
                ("ping", 4)),
           _local(("lan_app", 3)),
           (80, _mix(("tls_api", 2), (_SPEAKER_VOICE, 1)))),
    Device("Panasonic doorphone", "doorphone", 5400, 6000,
           _mix(("tls_short", 16), ("tls_api", 12), ("http_get", 5), ("dns", 17), ("ntp", 2),
                (_DOORPHONE_SIP, 28), ("stun", 16), ("ping", 3), (_HUB_XMPP, 1)),
           _local(("lan_app", 2), ("discovery_bcast", 2)),
           (60, _mix((_CAM_STREAM, 1), ("tls_api", 1)))),
    Device("Google Home", "speaker", 3600, 9000,
           _mix(("tls_short", 18), ("tls_keepalive", 18), ("dns", 20), ("ntp", 2), ("quic", 38),
                ("ping", 4)),
           _local(("lan_app", 3)),
           (80, _mix(("tls_api", 1), ("quic", 2)))),
    Device("Wansview camera", "camera", 2300, 4000,
           _mix(("tls_short", 22), ("http_get", 10), ("dns", 18), ("ntp", 4), (_CAM_P2P, 34),
                ("stun", 8), (_HUB_XMPP, 4)),
           _local(("discovery_bcast", 3)),
           (40, _mix((_CAM_STREAM, 2), ("tls_api", 1)))),
    Device("MCJ room hub", "hub", 900, 2200,
           _mix(("tls_api", 25), ("tls_keepalive", 20), ("dns", 30), ("ntp", 5), ("http_check", 10),
                ("ping", 10)),
           _local(("lan_app", 1))),
    Device("Fredi camera", "camera", 700, 2400,
           _mix(("http_get", 30), ("dns", 25), ("ntp", 5), (_CAM_P2P, 35), ("stun", 5)),
           _local(("discovery_bcast", 4)),
           (20, _mix((_CAM_STREAM, 1)))),
    Device("JVC Kenwood hub", "hub", 470, 1400,
           _mix(("tls_short", 30), ("tls_keepalive", 15), ("dns", 30), ("ntp", 10), ("http_check", 15)),
           _local()),
    Device("Philips Hue bridge", "lightbulb", 380, 5000,
           _mix(("tls_keepalive", 35), ("tls_short", 15), ("dns", 30), ("ntp", 10), ("http_check", 10)),
           _local(("ssdp", 6)),
           (15, _mix(("tls_api", 1)))),
    Device("Qrio hub", "smart lock", 250, 300,
           _mix(("tls_short", 50), ("tls_keepalive", 40), ("tls_api", 10)),
           _local()),
    Device("Amazon Echo Show", "speaker", 600, 2800,
           _mix(((_ECHO_CHANNEL), 50), ("tls_short", 15), ("dns", 25), ("ntp", 5), ("ping", 5)),
           _local(("lan_app", 1)),
           (40, _mix(("tls_api", 1), ("tls_download", 1)))),
    Device("Amazon Echo Dot", "speaker", 450, 2000,
           _mix(("tls_keepalive", 40), ("tls_short", 20), ("dns", 28), ("ntp", 6), ("ping", 6)),
           _local(),
           (40, _mix(("tls_api", 1)))),
    Device("Nature Remo", "remote controller", 260, 800,
           _mix(("tls_keepalive", 50), ("tls_short", 10), ("dns", 30), ("ntp", 10)),
           _local(("lan_app", 1)),
           (10, _mix(("tls_api", 1)))),
    Device("Bitfinder Awair", "air quality sensor", 200, 600,
           _mix(("tls_api", 40), ("mqtt_tls", 15), ("dns", 35), ("ntp", 10)),
           _local(),
           (8, _mix(("tls_api", 1)))),
    Device("Planex outdoor camera", "camera", 320, 1600,
           _mix(("http_get", 20), (_PLANEX_10001, 30), ("dns", 33), ("ntp", 7), (_CAM_P2P, 10)),
           _local(("discovery_bcast", 2)),
           (15, _mix((_CAM_STREAM, 1)))),
    Device("iRobot Roomba", "vacuum cleaner", 50, 300,
           _mix((_ROOMBA_MQTT, 60), ("dns", 25), ("ntp", 5), ("tls_short", 10)),
           _local()),
    Device("Planex UCA01A camera", "camera", 60, 500,
           _mix((_UCA01A_RELAY, 65), ("dns", 20), ("ntp", 5), ("http_get", 10)),
           _local(("discovery_bcast", 2))),
    Device("Planex pan-tilt camera", "camera", 40, 500,
           _mix(("http_get", 30), ("dns", 35), ("ntp", 10), (_CAM_P2P, 25)),
           _local(("discovery_bcast", 2))),
    Device("Xiaomi LED", "lightbulb", 30, 400,
           _mix((_XIAOMI_CLOUD, 60), ("dns", 30), ("ntp", 10)),
           _local()),
    Device("Sesame access point", "smart lock", 70, 300,
           _mix(("mqtt_tls", 45), ("http_check", 15), ("dns", 30), ("ntp", 10)),
           _local()),
    Device("Power Elec plug", "plug", 45, 400,
           _mix((_PLUG_10001, 45), ("tls_short", 10), ("dns", 35), ("ntp", 10)),
           _local()),
    Device("JVC Kenwood camera", "camera", 25, 600,
           _mix(("http_get", 35), ("dns", 35), ("ntp", 10), (_CAM_P2P, 20)),
           _local(("discovery_bcast", 2))),
    Device("I-O Data Qwatch camera", "camera", 35, 600,
           _mix(("tls_short", 25), ("http_get", 20), ("dns", 30), ("ntp", 5), (_CAM_P2P, 20)),
           _local()),
    Device("LINE Clova speaker", "speaker", 65, 900,
           _mix(("tls_keepalive", 35), ("tls_short", 20), ("dns", 30), ("ntp", 5), ("quic", 10)),
           _local(("lan_app", 1))),
    Device("LinkJapan eRemote", "remote controller", 28, 500,
           _mix(("tls_short", 35), ("mqtt_tls", 20), ("dns", 35), ("ntp", 10)),
           _local()),
    Device("Nokia body scale", "health", 0, 20, (), _local(),
           (1.75, _mix(("tls_api", 2), ("dns", 1))), daily_interaction=True),
    Device("Sony camera", "camera", 0, 1800, (), _local(("lan_app", 2), ("discovery_bcast", 3))),
    Device("Planex one-shot camera", "camera", 0, 700, (), _local(("discovery_bcast", 3))),
    Device("LinkJapan eSensor", "sensor", 0, 1200, (), _local(("linklocal_probe", 2))),
)

def mac_of(index: int) -> str:
    """The lab MAC of device ``index`` (locally administered, stable across runs)."""
    return f"02:1a:11:00:{index // 256:02x}:{index % 256:02x}"
