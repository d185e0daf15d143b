"""Service models written for one device each: the behaviours that set a device apart
in the paper's data (section III-A), such as the Sony speaker's long push channel with
hundreds of small reverse packets, the Bravia TV's 300-400 KB responses, the UDP/10001
protocol shared by the Planex outdoor camera and the Power Elec plug, and the long
sessions of the Planex UCA01A camera, the Xiaomi LED and the iRobot Roomba.
"""

from .models import MODELS, PROTO_TCP, PROTO_UDP, Direction, ServiceModel, tweak

M = MODELS


def own(name: str, model: ServiceModel) -> tuple[str, ServiceModel]:
    """A device-specific model with the binding name it is known by."""
    return (name, model)


SPEAKER_PUSH = own(
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
BRAVIA_CONTENT = own(
    "content",
    tweak(
        M["tls_download"],
        rev_packets=(246, 0.05, 214, 270),
        rev_bulk=0.985,
        rev_empty=0.0,
        rev_gap=(4, 0.6),
    ),
)
DOORPHONE_SIP = own(
    "sip",
    ServiceModel(
        PROTO_UDP,
        (5060,),
        Direction((2, 0.3, 1, 4), (480, 40), (380, 40), gap=(4000, 0.5)),
        Direction((2, 0.3, 1, 4), (420, 40), (360, 40), gap=(4000, 0.5)),
    ),
)
SPEAKER_VOICE = own(
    "voice",
    tweak(M["quic"], ports=(5228,), proto=PROTO_TCP, fwd_empty=0.4, rev_empty=0.3),
)
ECHO_CHANNEL = own(
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
PLANEX_10001 = own(
    "udp10001",
    ServiceModel(
        PROTO_UDP,
        (10001,),
        Direction((4, 0.3, 2, 9), (64, 3), (64, 3), gap=(20000, 0.3)),
        Direction((4, 0.3, 2, 9), (52, 3), (52, 3), gap=(20000, 0.3)),
    ),
)
#: The plug speaks the same protocol on UDP/10001, with fewer packets and longer gaps.
PLUG_10001 = own(
    "udp10001",
    tweak(
        PLANEX_10001[1],
        fwd_packets=(2, 0.2, 1, 3),
        fwd_gap=(70000, 0.3),
        rev_packets=(2, 0.2, 1, 3),
        rev_gap=(70000, 0.3),
    ),
)
UCA01A_RELAY = own(
    "relay",
    ServiceModel(
        PROTO_UDP,
        (9001,),
        Direction((150, 0.2, 60, 300), (90, 10), (120, 40), gap=(900, 0.4)),
        Direction((270, 0.15, 205, 420), (80, 10), (110, 40), gap=(500, 0.4)),
    ),
)
XIAOMI_CLOUD = own(
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
ROOMBA_MQTT = own(
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
CAM_STREAM = own(
    "stream",
    ServiceModel(
        PROTO_UDP,
        (32100,),
        Direction((60, 0.5, 10, 400), (60, 10), (80, 30), gap=(200, 0.6)),
        Direction((300, 0.5, 40, 2000), (1100, 60), (1100, 200), bulk=0.5, gap=(40, 0.6)),
    ),
)
HUB_XMPP = own("xmpp", tweak(M["mqtt_tls"], ports=(5222,)))
#: A weigh-in: the scale uploads one measurement over TLS, with its own client library.
NOKIA_SYNC = own(
    "weigh_in",
    tweak(
        M["tls_api"],
        fwd_packets=(11, 0.2, 8, 16),
        fwd_first=(611, 2),
        fwd_size=(820, 30),
        rev_packets=(9, 0.2, 6, 14),
        rev_first=(1318, 4),
        rev_size=(96, 8),
        rev_bulk=0.0,
        fwd_gap=(650, 0.4),
        rev_gap=(650, 0.4),
    ),
)
