"""Tests of the IPFIX transports: exporter filtering, UDP datagrams, TCP framing."""

import asyncio
import socket
import struct

from agent.metrics import Metrics
from agent.receive import Receiver, canonical_host


def message(body: bytes = b"", domain: int = 1) -> bytes:
    """A syntactically framed IPFIX message (header only, plus opaque body)."""
    return struct.pack(">HHIII", 10, 16 + len(body), 1700000000, 0, domain) + body


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=20))


async def wait_until(predicate, timeout=5.0):
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


async def closed_by_peer(reader) -> bool:
    try:
        return await reader.read() == b""
    except ConnectionResetError:
        return True


def test_canonical_host_forms():
    """Peer addresses compare as config stores them: mapped IPv4 unmapped, scope cut."""
    assert canonical_host("::ffff:192.0.2.1") == "192.0.2.1"
    assert canonical_host("fe80::1%eth0") == "fe80::1"
    assert canonical_host("2001:DB8::1") == "2001:db8::1"


def test_udp_from_configured_exporter_is_delivered():
    """A datagram from a configured exporter reaches the handler with a UDP session."""

    async def scenario():
        got, metrics = [], Metrics()
        receiver = Receiver({"127.0.0.1"}, lambda m, s: got.append((m, s)), metrics)
        host, port = (await receiver.start_udp("127.0.0.1", 0))[:2]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(message(b"abcd"), (host, port))
            assert await wait_until(lambda: got)
        await receiver.close()
        return got, metrics

    got, metrics = run(scenario())
    assert got[0][0] == message(b"abcd")
    assert got[0][1][:2] == ("udp", "127.0.0.1")
    assert metrics.counters["datagrams_unknown_exporter"] == 0


def test_udp_bursts_carry_every_datagram_in_order():
    """With on_burst, datagrams waiting together arrive as one list, in order, with sessions."""

    async def scenario():
        bursts, drained, metrics = [], [], Metrics()
        receiver = Receiver(
            {"127.0.0.1"},
            None,
            metrics,
            on_burst=lambda d, s: bursts.append((d, s)),
            on_drained=lambda: drained.append(1),
        )
        host, port = (await receiver.start_udp("127.0.0.1", 0))[:2]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for i in range(20):
                sock.sendto(message(bytes([i])), (host, port))
        assert await wait_until(lambda: sum(len(d) for d, _ in bursts) == 20)
        await receiver.close()
        return bursts, drained

    bursts, drained = run(scenario())
    datagrams = [d for burst, _ in bursts for d in burst]
    assert datagrams == [message(bytes([i])) for i in range(20)]
    assert all(s[:2] == ("udp", "127.0.0.1") for _, sessions in bursts for s in sessions)
    assert len(drained) >= len(bursts)
    sessions = [s for _, burst in bursts for s in burst]
    assert all(s is sessions[0] for s in sessions), "one session object per exporter port"


def test_udp_dual_stack_socket_accepts_ipv4_exporters():
    """Listening on :: takes IPv4 datagrams and names the exporter by its IPv4 address."""

    async def scenario():
        got, metrics = [], Metrics()
        receiver = Receiver({"127.0.0.1"}, lambda m, s: got.append(s), metrics)
        port = (await receiver.start_udp("::", 0))[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(message(), ("127.0.0.1", port))
            assert await wait_until(lambda: got)
        await receiver.close()
        return got

    assert run(scenario())[0][1] == "127.0.0.1"


def test_unknown_exporter_is_counted_and_dropped():
    """Datagrams and TCP connections from unconfigured addresses are dropped and counted."""

    async def scenario():
        got, metrics = [], Metrics()
        receiver = Receiver({"192.0.2.1"}, lambda m, s: got.append(m), metrics)
        udp = await receiver.start_udp("127.0.0.1", 0)
        tcp = await receiver.start_tcp("127.0.0.1", 0)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(3):
                sock.sendto(message(), udp[:2])
        reader, writer = await asyncio.open_connection(*tcp[:2])
        writer.write(message())
        assert await closed_by_peer(reader)
        writer.close()
        await wait_until(lambda: metrics.counters["datagrams_unknown_exporter"] >= 4)
        await receiver.close()
        return got, metrics

    got, metrics = run(scenario())
    assert got == []
    assert metrics.counters["datagrams_unknown_exporter"] == 4


def test_tcp_stream_is_cut_into_messages():
    """Messages split and joined across TCP writes come out whole and in order."""

    async def scenario():
        got, closed, metrics = [], [], Metrics()
        receiver = Receiver(
            {"127.0.0.1"},
            lambda m, s: got.append((m, s)),
            metrics,
            on_session_closed=closed.append,
        )
        host, port = (await receiver.start_tcp("127.0.0.1", 0))[:2]
        _, writer = await asyncio.open_connection(host, port)
        stream = message(b"one") + message(b"two" * 100) + message(b"three")
        writer.write(stream[:10])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(stream[10:])
        await writer.drain()
        assert await wait_until(lambda: len(got) == 3)
        writer.close()
        assert await wait_until(lambda: closed)
        await receiver.close()
        return got, closed

    got, closed = run(scenario())
    assert [m for m, _ in got] == [message(b"one"), message(b"two" * 100), message(b"three")]
    assert got[0][1][0] == "tcp" and closed == [got[0][1]]


def test_tcp_lost_framing_closes_the_connection():
    """A stream whose header is not IPFIX version 10 is counted and closed, not fatal."""

    async def scenario():
        got, metrics = [], Metrics()
        receiver = Receiver({"127.0.0.1"}, lambda m, s: got.append(m), metrics)
        host, port = (await receiver.start_tcp("127.0.0.1", 0))[:2]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(message(b"ok") + b"\x00\x09\x00\x20" + bytes(28))
        assert await closed_by_peer(reader)
        writer.close()
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(message(b"again"))
        assert await wait_until(lambda: len(got) == 2)
        writer.close()
        await receiver.close()
        return got, metrics

    got, metrics = run(scenario())
    assert got == [message(b"ok"), message(b"again")]
    assert metrics.counters["decode_error_tcp_framing"] == 1
