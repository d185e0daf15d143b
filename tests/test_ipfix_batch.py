"""Decoding bursts of datagrams gives exactly what decoding them one by one gives."""

import random
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.flows import FLOW_DTYPE
from agent.ipfix import Decoder, decode_file, flowplan, iter_messages
from agent.ipfix.message import index_messages, iter_sets
from agent.ipfix.writer import yaf_messages
from tests.conftest import SAMPLES
from tests.test_ipfix_decode import data_set, message, template_set, varlen
from tests.test_ipfix_samples import GROUPS, YAF_FILES, group_bytes

UDP = ("udp", "192.0.2.1", 4739)
UDP2 = ("udp", "192.0.2.2", 4739)


@pytest.fixture(params=["native", "numpy"])
def path(request, monkeypatch):
    """Run the test on the compiled helper and on its numpy twin."""
    if request.param == "numpy":
        monkeypatch.setattr(flowplan, "_native", None)
    elif flowplan._native is None:
        pytest.skip("agent.ipfix._native not built")
    return request.param


def yaf_flows(samples, n: int) -> np.ndarray:
    """``n`` flow rows repeating the YAF flow-statistics sample, times spread out."""
    flows = decode_file(samples / "yaf-2.16.4-local/yaf_flowstats_biflow.yaf")
    rows = np.tile(flows, n // len(flows) + 1)[:n].copy()
    rows["flowStartMilliseconds"] += np.arange(n) * 7
    rows["flowEndMilliseconds"] += np.arange(n) * 7
    return rows


def udp_messages(samples, n: int = 120, **kw) -> list[bytes]:
    """YAF biflow records as YAF sends them over UDP: 1400 octets, templates in each."""
    return list(yaf_messages(yaf_flows(samples, n), mtu=1400, templates="every", **kw))


def state(decoder: Decoder) -> dict:
    """What a decoder keeps between messages, comparable across decoders."""
    templates = {
        key: {tid: (t.fields, t.scope_count, seen) for tid, (t, seen) in table.templates.items()}
        for key, table in decoder.templates._domains.items()
    }
    return {
        "counters": dict(decoder.counters),
        "templates": templates,
        "sequence": dict(decoder._next_sequence),
        "uptime": dict(decoder._uptime_base),
    }


def one_by_one(datagrams, sessions, bursts):
    """(decoder, flows, counts, errors, options) of ``decode_message`` in a loop."""
    decoder = Decoder(template_lifetime=10.0, max_templates_per_session=64)
    flows, counts, errors, options, i = [], [], [], [], 0
    for size, now in bursts:
        for datagram, session in zip(datagrams[i : i + size], sessions[i : i + size]):
            result = decoder.decode_message(datagram, session, now=now)
            flows.append(result.flows)
            counts.append(len(result.flows))
            options.extend(result.options)
            if result.error is not None:
                errors.append((len(counts) - 1, result.error.code, str(result.error)))
        i += size
    return decoder, flowplan.concat_flows(flows), counts, errors, options


def in_bursts(datagrams, sessions, bursts):
    """The same through ``decode_datagrams``, one call per burst."""
    decoder = Decoder(template_lifetime=10.0, max_templates_per_session=64)
    flows, counts, errors, options, i = [], [], [], [], 0
    for size, now in bursts:
        result = decoder.decode_datagrams(datagrams[i : i + size], sessions[i : i + size], now=now)
        assert result.counts.sum() == len(result.flows)
        flows.append(result.flows)
        counts.extend(result.counts.tolist())
        options.extend(result.options)
        errors.extend((i + k, e.code, str(e)) for k, e in result.errors)
        i += size
    return decoder, flowplan.concat_flows(flows), counts, errors, options


def assert_same(datagrams, sessions, bursts=None):
    """Both ways agree on rows, per-datagram counts, errors, options and decoder state."""
    bursts = bursts or [(64, 1.0)] * (len(datagrams) // 64 + 1)
    a = one_by_one(datagrams, sessions, bursts)
    b = in_bursts(datagrams, sessions, bursts)
    assert a[1].dtype == b[1].dtype == FLOW_DTYPE
    assert len(a[1]) == len(b[1])
    assert a[1].tobytes() == b[1].tobytes()
    assert a[2] == b[2]
    assert a[3] == b[3]
    assert a[4] == b[4]
    assert state(a[0]) == state(b[0])
    return a


def test_udp_yaf_bursts_match_one_by_one(samples, path):
    """YAF over UDP (templates in every datagram) decodes the same in bursts of any size."""
    datagrams = udp_messages(samples, 300)
    sessions = [UDP] * len(datagrams)
    bursts = [(1, 1.0), (2, 1.0), (5, 2.0), (64, 2.0), (3, 2.5), (200, 3.0)]
    _, flows, *_ = assert_same(datagrams, sessions, bursts)
    assert len(flows) == 300


def test_interleaved_exporters_and_domains_match(samples, path):
    """Two exporters and two observation domains interleaved in one burst."""
    one = udp_messages(samples, 80, domain=1)
    two = udp_messages(samples, 80, domain=2)
    three = udp_messages(samples, 80, domain=1)
    datagrams, sessions = [], []
    for a, b, c in zip(one, two, three):
        datagrams += [a, b, c]
        sessions += [UDP, UDP, UDP2]
    _, flows, *_ = assert_same(datagrams, sessions, [(7, 1.0), (len(datagrams), 1.0)])
    assert len(flows) >= 200


@pytest.mark.parametrize("name", YAF_FILES)
def test_real_files_match(samples, path, name):
    """Real exporters' files, message by message as if each were a datagram."""
    datagrams = [m for _, m in iter_messages((samples / name).read_bytes())]
    sessions = [("tcp", "198.51.100.7", 1, 1)] * len(datagrams)
    assert_same(datagrams, sessions, [(len(datagrams), 0.0)])


@pytest.mark.parametrize("name", sorted(GROUPS))
def test_real_udp_exports_match(samples, path, name):
    """Real UDP exports (templates, options, data) repeated so the fast path is taken."""
    messages = [m for _, m in iter_messages(group_bytes(samples, name))]
    datagrams = messages * 3
    a = assert_same(datagrams, [UDP] * len(datagrams), [(len(datagrams), 0.0)])
    assert sum(a[2]) == 3 * sum(a[2][: len(messages)])


def test_templates_expire_and_sequence_gaps_the_same_way(samples, path):
    """Template lifetime, lost and reordered datagrams are counted identically."""
    datagrams = udp_messages(samples, 200)
    plain = [m[:16] + m[16 + struct.unpack_from("!H", m, 18)[0] :] for m in datagrams]
    plain = [m[:2] + struct.pack("!H", len(m)) + m[4:] for m in plain]
    stream = (
        datagrams[:5] + plain[5:20] + plain[20:22] + datagrams[22:24] + plain[24:30]
        + plain[31:40] + [plain[41], plain[40]] + plain[42:]
    )  # fmt: skip
    bursts = [(5, 0.0), (15, 5.0), (2, 20.0), (len(stream) - 22, 20.0)]
    decoder, *_ = assert_same(stream, [UDP] * len(stream), bursts)
    assert decoder.counters["error_missing_template"] > 0
    assert decoder.counters["records_lost"] > 0 and decoder.counters["messages_reordered"] > 0


def test_lists_of_different_lengths_are_rejected():
    """A session list that does not match the datagrams is a programming error."""
    with pytest.raises(ValueError, match="sessions"):
        Decoder().decode_datagrams([b"x"], [])


def test_forgotten_session_starts_afresh(samples, path):
    """After forget_session the burst path relearns templates as decode_message does."""
    datagrams = udp_messages(samples, 40)
    plain = datagrams[5][:16] + datagrams[5][16 + struct.unpack_from("!H", datagrams[5], 18)[0] :]
    plain = plain[:2] + struct.pack("!H", len(plain)) + plain[4:]
    decoder = Decoder()
    first = decoder.decode_datagrams(datagrams * 2, [UDP] * len(datagrams) * 2, now=1.0)
    decoder.forget_session(UDP)
    after = decoder.decode_datagrams([plain] * 4, [UDP] * 4, now=1.0)
    assert len(first.flows) == 80 and not first.errors
    assert len(after.flows) == 0 and len(after.errors) == 4
    assert after.errors[0][1].code == "missing_template"


def mutate(rng: random.Random, datagram: bytes) -> bytes:
    """A datagram with bit flips, a cut, a bad length or inserted octets."""
    buf = bytearray(datagram)
    kind = rng.choice(["flip", "cut", "length", "setlength", "insert", "keep"])
    if kind == "flip":
        for _ in range(rng.randint(1, 6)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif kind == "cut":
        buf = buf[: rng.randrange(len(buf))]
    elif kind == "length":
        buf[2:4] = struct.pack("!H", rng.randrange(0x10000))
    elif kind == "setlength" and len(buf) > 20:
        pos = rng.choice([18, 16 + struct.unpack_from("!H", buf, 18)[0] + 2])
        if pos + 2 <= len(buf):
            buf[pos : pos + 2] = struct.pack("!H", rng.randrange(0x10000))
    elif kind == "insert":
        pos = rng.randrange(16, len(buf))
        buf[pos:pos] = rng.randbytes(rng.randint(1, 12))
        buf[2:4] = struct.pack("!H", min(len(buf), 0xFFFF))
    return bytes(buf)


@pytest.fixture(scope="module")
def valid_udp():
    """Valid UDP datagrams to mutate: ours (YAF biflow with flow statistics), then a real
    YAF UDP export with options templates and records."""
    if not SAMPLES.is_dir():
        pytest.skip("samples missing")
    real = [m for _, m in iter_messages(group_bytes(SAMPLES, "yaf_udp"))]
    return udp_messages(SAMPLES, 60) + real * 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), native=st.booleans())
def test_mutated_bursts_match_one_by_one(valid_udp, seed, native):
    """Bursts with mutated datagrams among valid ones: identical results, no exception."""
    rng = random.Random(seed)
    datagrams = [mutate(rng, d) if rng.random() < 0.3 else d for d in valid_udp]
    sessions = [rng.choice([UDP, UDP2]) for _ in datagrams]
    saved = flowplan._native
    if not native:
        flowplan._native = None
    try:
        assert_same(datagrams, sessions, [(rng.randint(1, 40), 1.0) for _ in range(8)])
    finally:
        flowplan._native = saved


def test_index_twins_agree(valid_udp):
    """The compiled message index and its Python twin give the same records."""
    if flowplan._native is None:
        pytest.skip("agent.ipfix._native not built")
    rng = random.Random(7)
    datagrams = [mutate(rng, d) for d in valid_udp] + valid_udp
    buf = b"".join(datagrams)
    lengths = np.array([len(d) for d in datagrams])
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    slots = [i % 3 for i in range(len(datagrams))]
    native = index_messages(buf, offsets, lengths, slots, native=flowplan._native)
    python = index_messages(buf, offsets, lengths, slots, native=None)
    assert native[0].tobytes() == python[0].tobytes()
    assert native[1].tobytes() == python[1].tobytes()
    assert native[0]["same"].sum() > 0 and (native[0]["status"] != 0).sum() > 0


def cut_short(datagram: bytes, octets: int) -> bytes:
    """The datagram with its last data set (and message) shortened, lengths kept valid."""
    pos, last = 16, 16
    while pos < len(datagram):
        last = pos
        pos += struct.unpack_from("!H", datagram, pos + 2)[0]
    buf = bytearray(datagram[: len(datagram) - octets])
    buf[2:4] = struct.pack("!H", len(buf))
    buf[last + 2 : last + 4] = struct.pack("!H", len(buf) - last)
    return bytes(buf)


def test_records_cut_short_in_known_templates_match(samples, path):
    """A data set cut inside a record, among datagrams on the fast path: same rows kept,
    same error and reason, and the sequence state dropped as decode_message does."""
    datagrams = udp_messages(samples, 120)
    stream = datagrams[:10] + [cut_short(datagrams[10], 9), cut_short(datagrams[11], 60)]
    stream += datagrams[12:]
    a = assert_same(stream, [UDP] * len(stream), [(len(stream), 1.0)])
    assert [e[0] for e in a[3]] == [10, 11]
    assert 0 < a[2][10] < a[2][12]


def test_default_clock_and_small_bursts(samples):
    """Without ``now`` the monotonic clock is used; bursts of any size give every record."""
    datagrams = udp_messages(samples, 60)
    decoder = Decoder()
    total = 0
    for size in (1, 2, 3, 4, 50):
        part, datagrams = datagrams[:size], datagrams[size:]
        result = decoder.decode_datagrams(part, [UDP] * len(part))
        assert not result.errors and len(result.counts) == len(part)
        total += len(result.flows)
    assert total == decoder.counters["flow_records"] == 60


def test_other_data_templates_and_template_only_datagrams_match(path):
    """Data sets of non-flow templates (fixed and variable length), padding and
    template-only datagrams are counted as decode_message counts them."""
    fixed = template_set(400, [(1, 8), (2, 4)])
    var = template_set(401, [(1, 4), (82, 0xFFFF)])
    flow = template_set(402, [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 4)])
    head = fixed[:4] + fixed[4:] + var[4:] + flow[4:]
    head = struct.pack("!HH", 2, len(head)) + head[4:]
    rec = struct.pack("!QI", 5, 6)
    flows = b"".join(struct.pack("!4s4sHHBI", b"\x0a\0\0\1", b"\x08\x08\x08\x08", 80, 5, 6, 9)
                     for _ in range(3))  # fmt: skip
    datagrams, seq = [], 0
    for k in range(12):
        body = [head, data_set(400, rec * 2 + (b"\0\0" if k % 2 else b"\1\0"))]
        body += [data_set(401, struct.pack("!I", k) + varlen(b"eth0")), data_set(402, flows)]
        datagrams.append(message(*body, seq=seq))
        seq += 2 + 3
        datagrams.append(message(head, seq=seq))
    decoder, rows, *_ = assert_same(datagrams, [UDP] * len(datagrams), [(24, 1.0)])
    assert len(rows) == 36 and decoder.counters["set_length_mismatch"] == 6


@pytest.fixture
def steady_calls(monkeypatch):
    """Counts the bursts ``flowplan.decode_steady`` took whole (and those it left)."""
    calls = {"taken": 0, "left": 0}
    real = flowplan.decode_steady

    def spy(*args):
        done = real(*args)
        calls["taken" if done is not None else "left"] += 1
        return done

    monkeypatch.setattr(flowplan, "decode_steady", spy)
    return calls


def with_padding(datagram: bytes, pad: bytes) -> bytes:
    """A one-data-set message with ``pad`` after its last record (set and message grown)."""
    head = 16 + (struct.unpack_from("!H", datagram, 18)[0] if datagram[17] in (2, 3) else 0)
    buf = bytearray(datagram + pad)
    buf[2:4] = struct.pack("!H", len(buf))
    buf[head + 2 : head + 4] = struct.pack("!H", len(buf) - head)
    return bytes(buf)


@pytest.mark.parametrize("templates", ["once", "every"])
def test_steady_exporter_bursts_take_one_call_and_match(samples, steady_calls, templates):
    """One exporter in its steady state (templates once, or the same template set in each
    message): once a burst has gone the general way (bursts under ``SMALL_BURST`` go
    message by message and teach it nothing), every burst is decoded whole by one
    compiled call, with the rows, counts and state of decoding message by message."""
    datagrams = list(yaf_messages(yaf_flows(samples, 1800), mtu=1400, templates=templates))
    bursts = [(3, 1.0), (40, 1.0), (1, 2.0), (64, 2.0)]
    bursts += [(50, 3.0)] * -(-(len(datagrams) - 108) // 50)
    _, flows, counts, errors, _ = assert_same(datagrams, [UDP] * len(datagrams), bursts)
    assert len(flows) == 1800 and not errors and sum(counts) == 1800
    assert steady_calls["taken"] == len(bursts) - 2
    if templates == "every":
        assert steady_calls["left"] == 0


def test_steady_path_leaves_every_other_shape(samples, steady_calls):
    """A sequence gap, a reordered pair, zero and non-zero padding, a record cut short, a
    message of another domain and a template set that changes: each burst holding one
    leaves the steady path and still decodes as message by message does."""
    datagrams = list(yaf_messages(yaf_flows(samples, 700), mtu=1400, templates="once"))
    other = list(yaf_messages(yaf_flows(samples, 20), mtu=1400, templates="once", domain=7))
    changed = next(yaf_messages(yaf_flows(samples, 20), mtu=1400, templates="every"))
    changed = changed[:22] + bytes([changed[22] ^ 1]) + changed[23:]
    stream = datagrams[:20] + datagrams[21:30] + [datagrams[31], datagrams[30]]
    stream += [with_padding(datagrams[32], b"\0\0\0"), with_padding(datagrams[33], b"\1\0")]
    stream += [cut_short(datagrams[34], 9)] + datagrams[35:40] + other + datagrams[40:50]
    stream += [changed] + datagrams[50:]
    bursts = [(20, 1.0)] + [(3, 1.0)] * (len(stream) // 3 + 1)
    decoder, _, counts, errors, _ = assert_same(stream, [UDP] * len(stream), bursts)
    assert decoder.counters["records_lost"] > 0 and decoder.counters["messages_reordered"] > 0
    alone = Decoder()
    alone.decode_message(datagrams[0], UDP)
    assert counts[31] == counts[32] == len(alone.decode_message(datagrams[32], UDP).flows) > 0
    assert 33 in [at for at, *_ in errors]
    assert steady_calls["taken"] > 0 and steady_calls["left"] >= 5


@pytest.fixture(scope="module")
def steady_udp():
    """Datagrams of one exporter in its steady state: a template message, then data."""
    if not SAMPLES.is_dir():
        pytest.skip("samples missing")
    return list(yaf_messages(yaf_flows(SAMPLES, 400), mtu=1400, templates="once"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_steady_streams_match_one_by_one(steady_udp, seed):
    """A steady exporter whose datagrams are sometimes mutated: identical results."""
    rng = random.Random(seed)
    datagrams = steady_udp
    stream = datagrams[:1] + [mutate(rng, d) if rng.random() < 0.05 else d for d in datagrams[1:]]
    assert_same(stream, [UDP] * len(stream), [(rng.randint(1, 30), 1.0) for _ in range(20)])


def messages_both_ways(messages, session):
    """(flows, errors, state) of ``decode_message`` with runs of flow sets joined, then set
    by set; each decoder sees the messages in order."""
    out = []
    for join in (True, False):
        decoder = Decoder(template_lifetime=10.0, max_templates_per_session=64)
        decoder.join_sets = join
        flows, errors = [], []
        for m in messages:
            result = decoder.decode_message(m, session, now=1.0)
            flows.append(result.flows)
            errors.append([(e.code, str(e)) for e in result.errors])
        out.append((flowplan.concat_flows(flows).tobytes(), errors, state(decoder)))
    return out


def interleaved_file_messages(samples) -> list[bytes]:
    """File-layout messages whose records alternate between YAF's biflow and uniflow
    layouts, so each message holds many short flow data sets."""
    flows = yaf_flows(samples, 400)
    flows["reversePacketTotalCount"][::3] = 0
    flows["reverseOctetTotalCount"][::3] = 0
    return list(yaf_messages(flows, mtu=65000, templates="once"))


def test_joined_flow_sets_match_set_by_set(samples, path):
    """Many short flow sets in one message, real files, and mutated messages: the same
    rows, errors and decoder state whether runs of flow sets are joined or not."""
    messages = interleaved_file_messages(samples)
    data_sets = [s for s in iter_sets(memoryview(messages[1]), len(messages[1])) if s[0] >= 256]
    assert len(data_sets) > 100
    joined, alone = messages_both_ways(messages, ("tcp", "198.51.100.7", 1, 1))
    assert joined == alone and joined[2]["counters"]["data_records"] == 400

    for name in YAF_FILES:
        file_messages = [m for _, m in iter_messages((samples / name).read_bytes())]
        joined, alone = messages_both_ways(file_messages, ("tcp", "198.51.100.7", 1, 1))
        assert joined == alone, name

    rng = random.Random(3)
    for _ in range(40):
        broken = [mutate(rng, m) if rng.random() < 0.5 else m for m in messages]
        joined, alone = messages_both_ways(broken, UDP)
        assert joined == alone
