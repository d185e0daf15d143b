"""The synthetic lab reproduces the facts the paper publishes about its data."""

import datetime as dt

import numpy as np
import pytest

from agent.features import remote_mask
from compile.testbed import changes
from compile.testbed.calendar import capture_days
from compile.testbed.devices import DEVICES
from compile.testbed.generate import SERVICES, Lab, service_of
from compile.testbed.packets import ACTIVE_TIMEOUT_MS, HEADERS
from compile.testbed.table import KINDS

SCALE = 0.02
NAMES = [d.name for d in DEVICES]
DAYS = capture_days()


def idx(name: str) -> int:
    return NAMES.index(name)


@pytest.fixture(scope="module")
def lab():
    """The whole capture at the demo scale, in memory, with per-flow device and day."""
    gen = Lab(SCALE, 3)
    parts = [gen.day(d) for d in DAYS]
    flows = np.concatenate([p.flows for p in parts])
    device = np.concatenate([p.device for p in parts])
    kind = np.concatenate([p.kind for p in parts])
    binding = np.concatenate([p.binding for p in parts])
    day = np.concatenate([np.full(len(p.flows), i) for i, p in enumerate(parts)])
    remote = remote_mask(flows)
    return {
        "gen": gen,
        "flows": flows,
        "device": device,
        "kind": kind,
        "binding": binding,
        "day": day,
        "remote": remote,
        "service": service_of(flows),
    }


def full_scale(devices: list[str], days, scale: float = 1.0) -> dict[str, list[np.ndarray]]:
    """Some devices' remote flows per day at ``scale`` (cheap when few devices are asked)."""
    gen = Lab(scale, 5)
    only = {idx(n) for n in devices}
    out = {n: [] for n in devices}
    for d in days:
        part = gen.day(d, only=only)
        for n in devices:
            out[n].append(part.flows[(part.device == idx(n)) & remote_mask(part.flows)])
    return out


def test_device_types():
    """26 device types talk to the Internet, with the paper's names, and 3 are local-only."""
    talking = [d.name for d in DEVICES if not d.local_only]
    local = [d.name for d in DEVICES if d.local_only]
    assert len(talking) == 26 and len(set(talking)) == 26
    assert sorted(local) == ["LinkJapan eSensor", "Planex one-shot camera", "Sony camera"]
    for name in (
        "Sony Bravia TV",
        "Sony smart speaker",
        "Panasonic doorphone",
        "Google Home",
        "Wansview camera",
        "MCJ room hub",
        "Fredi camera",
        "JVC Kenwood hub",
        "JVC Kenwood camera",
        "Philips Hue bridge",
        "Qrio hub",
        "Nokia body scale",
        "Amazon Echo Show",
        "iRobot Roomba",
        "Planex UCA01A camera",
        "Planex outdoor camera",
        "Xiaomi LED",
        "Sesame access point",
        "Power Elec plug",
    ):
        assert name in talking


def test_local_only_devices_stay_home(lab):
    """The three local-only devices never have a remote flow; the others do."""
    for i, dev in enumerate(DEVICES):
        remote = (lab["remote"] & (lab["device"] == i)).sum()
        assert (remote == 0) == dev.local_only, dev.name


def test_activity_of_figure_2(lab):
    """Five devices over 100K remote flows at scale 1, five between 10K and 100K."""
    counts = np.bincount(lab["device"][lab["remote"]], minlength=len(DEVICES)) / SCALE
    top = (
        "Sony Bravia TV",
        "Sony smart speaker",
        "Panasonic doorphone",
        "Google Home",
        "Wansview camera",
    )
    middle = ("MCJ room hub", "Fredi camera", "JVC Kenwood hub", "Philips Hue bridge", "Qrio hub")
    assert sorted(np.argsort(counts)[-5:].tolist()) == sorted(idx(n) for n in top)
    assert all(counts[idx(n)] > 100_000 for n in top)
    assert all(10_000 < counts[idx(n)] < 100_000 for n in middle)
    assert 2.4e6 < counts.sum() < 3.1e6


def test_nokia_body_is_rare():
    """Nokia body has about 107 remote flows over the three months at scale 1."""
    flows = full_scale(["Nokia body scale"], DAYS)["Nokia body scale"]
    assert 75 <= sum(len(f) for f in flows) <= 140


def test_local_share(lab):
    """About 70% of all records are local (private, multicast, link-local, broadcast)."""
    assert 0.67 <= 1 - lab["remote"].mean() <= 0.73
    assert 6e6 < len(lab["flows"]) / SCALE < 11e6


def test_service_mix(lab):
    """Remote flows split into the paper's services within two points each."""
    share = np.bincount(lab["service"][lab["remote"]], minlength=len(SERVICES))
    share = share / lab["remote"].sum() * 100
    expected = {
        "http": 6,
        "https": 35,
        "dns": 20,
        "ntp": 2,
        "other_tcp": 3,
        "other_udp": 30,
        "icmp_igmp": 4,
    }
    for name, pct in expected.items():
        assert abs(share[SERVICES.index(name)] - pct) <= 2.0, (name, share)


def test_speaker_reverse_small_packets(lab):
    """Flows with more than 500 reverse small packets are the Sony speaker's (>= 90%)."""
    m = lab["remote"] & (lab["flows"]["reverseSmallPacketCount"] > 500)
    assert m.sum() > 20
    assert (lab["device"][m] == idx("Sony smart speaker")).mean() >= 0.9


def test_bravia_large_responses(lab):
    """Flows with 300-400 KB of reverse payload are Sony Bravia TV's (>= 90%)."""
    data = lab["flows"]["reverseDataByteCount"]
    m = lab["remote"] & (data >= 300_000) & (data <= 400_000)
    assert m.sum() > 20
    assert (lab["device"][m] == idx("Sony Bravia TV")).mean() >= 0.9


def test_reverse_packet_groups(lab):
    """UCA01A above 200 reverse packets, Xiaomi LED and Roomba 100-200, others below 70."""
    rev = lab["flows"]["reversePacketTotalCount"]
    for i, dev in enumerate(DEVICES):
        m = lab["remote"] & (lab["device"] == i)
        if not m.any():
            continue
        median = np.median(rev[m])
        if dev.name == "Planex UCA01A camera":
            assert median > 200
        elif dev.name in ("Xiaomi LED", "iRobot Roomba"):
            assert 100 < median < 200, dev.name
        else:
            assert median < 70, dev.name


def test_https_users(lab):
    """Some devices never use HTTPS; every remote flow of the Qrio hub is HTTPS."""
    https = lab["service"] == SERVICES.index("https")
    for name in (
        "Fredi camera",
        "JVC Kenwood camera",
        "Sesame access point",
        "Xiaomi LED",
        "Planex UCA01A camera",
        "Planex outdoor camera",
        "Planex pan-tilt camera",
        "Planex one-shot camera",
    ):
        assert not (https & (lab["device"] == idx(name))).any(), name
    qrio = lab["remote"] & (lab["device"] == idx("Qrio hub"))
    assert qrio.any() and https[qrio].all()


def test_ntp_is_76_bytes(lab):
    """Every NTP flow is one 76-octet packet each way, whatever the device."""
    f = lab["flows"][lab["service"] == SERVICES.index("ntp")]
    assert len(f) > 100
    assert (f["octetTotalCount"] == 76).all() and (f["reverseOctetTotalCount"] == 76).all()
    assert (f["packetTotalCount"] == 1).all() and (f["reversePacketTotalCount"] == 1).all()
    assert len(np.unique(lab["device"][lab["service"] == SERVICES.index("ntp")])) >= 20


def test_udp_10001_is_shared(lab):
    """UDP/10001 is used by the Planex outdoor camera and the Power Elec plug only."""
    f = lab["flows"]
    m = (f["protocolIdentifier"] == 17) & (f["destinationTransportPort"] == 10001)
    users = set(np.unique(lab["device"][m]).tolist())
    assert users == {idx("Planex outdoor camera"), idx("Power Elec plug")}
    planex = lab["remote"] & (lab["device"] == idx("Planex outdoor camera"))
    ports = np.unique(f["destinationTransportPort"][planex], return_counts=True)
    assert ports[0][np.argsort(ports[1])[-2]] == 10001 or ports[0][np.argmax(ports[1])] == 10001


def test_interarrival_of_figure_3():
    """Daily flow inter-arrival: ~50 min on average, 15 types under 10 min, Nokia > 10 h."""
    sample = [d for d in DAYS if d.date in (dt.date(2020, 1, 14), dt.date(2020, 4, 3))]
    talking = [d.name for d in DEVICES if not d.local_only and d.name != "Nokia body scale"]
    flows = full_scale(talking, sample, scale=0.1)
    flows["Nokia body scale"] = full_scale(["Nokia body scale"], DAYS)["Nokia body scale"]
    day_len = {d.date: d.fraction * 1440 for d in DAYS}
    minutes = {}
    for name, per_day in flows.items():
        days = sample if name != "Nokia body scale" else DAYS
        per_scale = 0.1 if name != "Nokia body scale" else 1.0
        values = [day_len[d.date] * per_scale / len(f) for d, f in zip(days, per_day) if len(f)]
        minutes[name] = float(np.mean(values))
    assert 35 <= np.mean(list(minutes.values())) <= 65
    assert sum(v < 10 for v in minutes.values()) == 15
    assert minutes["Nokia body scale"] > 600


def test_interaction_months(lab):
    """User sessions happen in January and March, at least twice a week, never in April."""
    inter = lab["kind"] == KINDS.index("interaction")
    months = np.array([DAYS[i].date.month for i in lab["day"][inter]])
    assert (months == 1).any() and (months == 3).any() and not (months == 4).any()
    for month in (1, 3):
        days = [d for d in DAYS if d.date.month == month and d.interaction]
        assert len(days) >= 2 * 4


def test_calendar():
    """Jan, Mar, Apr 2020 without February, 12-13 and 21-22 April; 20 April is short."""
    dates = {d.date for d in DAYS}
    assert not any(d.month == 2 for d in dates)
    for missing in (12, 13, 21, 22):
        assert dt.date(2020, 4, missing) not in dates
    assert len(DAYS) == 31 + 31 + 26
    short = next(d for d in DAYS if d.date == dt.date(2020, 4, 20))
    assert short.end_ms - short.start_ms == 3 * 3_600_000


def test_short_day_flows(lab):
    """Flows of 20 April start within its three captured hours."""
    i = next(k for k, d in enumerate(DAYS) if d.date == dt.date(2020, 4, 20))
    starts = lab["flows"]["flowStartMilliseconds"][lab["day"] == i]
    assert len(starts) and (starts < DAYS[i].end_ms).all() and (starts >= DAYS[i].start_ms).all()


def test_statistics_consistent(lab):
    """Every record's statistics agree with each other as YAF defines them."""
    f = lab["flows"]
    for p in ("", "reverse"):

        def g(name: str, p: str = p) -> np.ndarray:
            return f[p + name[0].upper() + name[1:]] if p else f[name]

        pk, octets, data = g("packetTotalCount"), g("octetTotalCount"), g("dataByteCount")
        nonempty, first, top = (
            g("nonEmptyPacketCount"),
            g("firstNonEmptyPacketSize"),
            g("maxPacketSize"),
        )
        assert (nonempty <= pk).all() and (data <= octets).all()
        headers = np.select(
            [f["protocolIdentifier"] == k for k in HEADERS], list(HEADERS.values())
        )
        assert (octets == data + pk * headers).all()
        assert (top >= first).all() and (data >= top).all()
        assert (g("smallPacketCount") + g("largePacketCount") <= nonempty).all()
        assert ((nonempty > 0) == (data > 0)).all() and ((nonempty > 0) == (first > 0)).all()
        assert (g("standardDeviationPayloadLength") <= top).all()
        span = f["flowEndMilliseconds"] - f["flowStartMilliseconds"]
        assert (
            g("averageInterarrivalTime") * np.maximum(pk.astype(np.int64) - 1, 0) <= span
        ).all()
    assert (f["flowEndMilliseconds"] - f["flowStartMilliseconds"] < ACTIVE_TIMEOUT_MS).all()
    bits = np.unpackbits(f["firstEightNonEmptyPacketDirections"][:, None], axis=1).sum(1)
    assert (bits <= np.minimum(f["reverseNonEmptyPacketCount"], 8)).all()


def test_records_are_pre_nat_and_ordered(lab):
    """Lab records carry the devices' MACs and private sources, ordered by start per day."""
    f = lab["flows"]
    assert (f["sourceMacAddress"] != 0).all()
    assert (f["sourceAddress"][:, 12] == 192).all()
    for i in (0, 40, 80):
        starts = f["flowStartMilliseconds"][lab["day"] == i]
        assert (np.diff(starts) >= 0).all()


def test_echo_show_change():
    """Echo Show's reverse bytes drop 30-40% and its reverse gaps double from 9 April."""
    april = [d for d in DAYS if d.date.month == 4]
    flows = full_scale(["Amazon Echo Show"], april)["Amazon Echo Show"]
    before = np.concatenate([f for d, f in zip(april, flows) if d.date < changes.ECHO_FROM])
    after = np.concatenate([f for d, f in zip(april, flows) if d.date >= changes.ECHO_FROM])
    tcp = lambda f: f[f["protocolIdentifier"] == 6]
    ratio = tcp(after)["reverseDataByteCount"].mean() / tcp(before)["reverseDataByteCount"].mean()
    assert 0.6 <= ratio <= 0.7
    slow = lambda f: f[(f["protocolIdentifier"] == 6) & (f["reversePacketTotalCount"] > 5)]
    gap_before = slow(before)["reverseAverageInterarrivalTime"]
    gap_after = slow(after)["reverseAverageInterarrivalTime"]
    assert 8_000 < np.median(gap_before) < 14_000
    assert 1.7 < np.median(gap_after) / np.median(gap_before) < 2.3


def test_flow_count_changes():
    """JVC hub ~1,000/day on 16-17 March and 220/day from 14 April; Bravia 98,019 on 14 April;
    Roomba about 6 flows on the short 20 April against about 50 usually."""
    pick = lambda *ds: [d for d in DAYS if d.date in ds]
    d = dt.date
    jvc_days = pick(d(2020, 3, 16), d(2020, 3, 17), d(2020, 3, 20), d(2020, 4, 15))
    jvc = [len(f) for f in full_scale(["JVC Kenwood hub"], jvc_days)["JVC Kenwood hub"]]
    assert jvc[:2] == [993, 1019] and 400 < jvc[2] < 540 and jvc[3] == 220
    bravia = full_scale(["Sony Bravia TV"], pick(d(2020, 4, 14)), scale=0.1)["Sony Bravia TV"]
    assert len(bravia[0]) == round(98_019 * 0.1)
    roomba_days = pick(*[d(2020, 4, k) for k in range(1, 9)], d(2020, 4, 20))
    roomba = [len(f) for f in full_scale(["iRobot Roomba"], roomba_days)["iRobot Roomba"]]
    assert 40 <= np.mean(roomba[:-1]) <= 60 and roomba[-1] == 6


def test_plug_drifts_toward_planex(lab):
    """The plug's UDP/10001 flows move toward the Planex outdoor camera's in the test period."""
    f = lab["flows"]
    udp = (f["protocolIdentifier"] == 17) & (f["destinationTransportPort"] == 10001)
    late = np.array([d.date >= dt.date(2020, 4, 10) for d in DAYS])[lab["day"]]
    train = np.array([d.period == "train" for d in DAYS])[lab["day"]]
    plug, planex = (
        udp & (lab["device"] == idx("Power Elec plug")),
        udp & (lab["device"] == idx("Planex outdoor camera")),
    )
    for field in ("packetTotalCount", "averageInterarrivalTime"):
        target = f[field][planex].mean()
        gap_train = abs(f[field][plug & train].mean() - target)
        gap_late = abs(f[field][plug & late].mean() - target)
        assert gap_late < 0.5 * gap_train, field


def test_plug_drift_starts_with_a_step():
    """On the first test days the plug's UDP/10001 flows have already moved most of the way
    to Planex's (``PLUG_ONSET``); with ``plug_onset=0`` they start from where they were."""
    train = [d for d in DAYS if dt.date(2020, 3, 13) <= d.date <= dt.date(2020, 3, 15)]
    first = [d for d in DAYS if dt.date(2020, 3, 16) <= d.date <= dt.date(2020, 3, 18)]
    plug, planex = idx("Power Elec plug"), idx("Planex outdoor camera")

    def udp10001(gen, days, device):
        parts = [gen.day(d, only={device}) for d in days]
        f = np.concatenate([p.flows for p in parts])
        mine = np.concatenate([p.device for p in parts]) == device
        return f[mine & (f["protocolIdentifier"] == 17) & (f["destinationTransportPort"] == 10001)]

    moved = {}
    for onset in (changes.PLUG_ONSET, 0.0):
        gen = Lab(1.0, 7, plug_onset=onset)
        before, after = udp10001(gen, train, plug), udp10001(gen, first, plug)
        target = udp10001(gen, first, planex)
        assert min(len(before), len(after), len(target)) > 20
        moved[onset] = [
            1 - abs(after[k].mean() - target[k].mean()) / abs(before[k].mean() - target[k].mean())
            for k in ("packetTotalCount", "averageInterarrivalTime")
        ]
    assert min(moved[changes.PLUG_ONSET]) > 0.4, moved
    assert max(moved[0.0]) < 0.25, moved


def test_classes_overlap_but_separate(lab):
    """A forest trained on January-mid March confuses some flows but gets most right, and
    it cannot tell NTP flows apart (they are identical across devices)."""
    from sklearn.ensemble import RandomForestClassifier

    from agent.features import feature_matrix

    train_days = np.array([d.period == "train" for d in DAYS])[lab["day"]]
    m = lab["remote"]
    x, y = feature_matrix(lab["flows"][m]), lab["device"][m]
    train = train_days[m]
    forest = RandomForestClassifier(20, max_features=5, random_state=0, n_jobs=1)
    forest.fit(x[train], y[train])
    pred = forest.predict(x[~train])
    truth = y[~train]
    recall = [(pred[truth == c] == c).mean() for c in np.unique(truth) if (truth == c).sum() > 20]
    assert 0.5 < np.mean(recall) < 0.95
    ntp = (lab["service"][m] == SERVICES.index("ntp"))[~train]
    assert (pred[ntp] == truth[ntp]).mean() < 0.5


def test_manifest():
    """The manifest lists each injected change with device, kind and dates."""
    items = changes.manifest()
    kinds = {(c["device_type"], c["kind"]) for c in items}
    assert ("Amazon Echo Show", "features") in kinds
    assert ("Power Elec plug", "features") in kinds
    assert {c["device_type"] for c in items} >= {
        "JVC Kenwood hub",
        "Sony Bravia TV",
        "iRobot Roomba",
    }
    assert ("*", "capture") in kinds
    for c in items:
        assert c["start"] <= c["end"] and c["description"]
        assert c["device_type"] in NAMES or c["device_type"] == changes.EVERY_TYPE
    (plug,) = [c for c in changes.manifest(0.25) if c["device_type"] == "Power Elec plug"]
    assert "a step of 25% of the way on the first day" in plug["description"]
