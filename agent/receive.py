"""IPFIX transport: UDP datagrams (one message each) and TCP streams, on asyncio.

Only configured exporter addresses are served: datagrams from any other address, and
connections from one, are counted (``datagrams_unknown_exporter``) and dropped. Each
accepted message goes to a handler with its transport session, ``("udp"|"tcp", host,
port)`` (a TCP session also numbers its connection, so templates die with it). The UDP
socket asks for a large kernel receive buffer, since exporters send in bursts, and is
read until empty (or up to a bound, for fairness) on each wakeup; the datagrams taken go
to ``on_burst`` together (to be decoded in one call), or one by one to the handler, and
once the socket is found empty ``on_drained`` lets the caller score what came in, so
batches are small when traffic is light (low latency) and grow with the backlog.
"""

import asyncio
import ipaddress
import logging
import socket
import struct

log = logging.getLogger(__name__)

IPFIX_VERSION = 10
MESSAGE_HEADER = struct.Struct(">HH")
RECEIVE_BUFFER = 16 << 20
MAX_DATAGRAMS_PER_WAKEUP = 256
#: UDP session tuples kept for reuse (exporter address and port pairs).
MAX_UDP_SESSIONS = 4096


def canonical_host(host: str) -> str:
    """A peer address as config stores it: IPv4-mapped IPv6 unmapped, scope id removed."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


class ExporterFilter:
    """Answers 'is this peer a configured exporter?' with a per-address cache."""

    def __init__(self, exporters, metrics):
        self.exporters = frozenset(exporters)
        self.metrics = metrics
        self._known: dict[str, str | None] = {}

    def check(self, host: str) -> str | None:
        """The canonical exporter address, or None (counted) when not configured."""
        found = self._known.get(host, False)
        if found is False:
            name = canonical_host(host)
            found = name if name in self.exporters else None
            if len(self._known) > 65536:
                self._known.clear()
            self._known[host] = found
        if found is None:
            self.metrics.inc("datagrams_unknown_exporter")
        return found


def _udp_socket(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
            break
        except OSError:
            continue
    sock.bind((address, port))
    sock.setblocking(False)
    return sock


class Receiver:
    """UDP and TCP listeners feeding ``handler(message, session)`` (TCP, and UDP without
    ``on_burst``) or ``on_burst(messages, sessions)`` (UDP)."""

    def __init__(
        self, exporters, handler, metrics, on_session_closed=None, on_drained=None, on_burst=None
    ):
        self.allowed = ExporterFilter(exporters, metrics)
        self.handler = handler
        self.metrics = metrics
        self.on_session_closed = on_session_closed
        self.on_drained = on_drained
        self.on_burst = on_burst
        self.sockets: list[socket.socket] = []
        self.servers: list[asyncio.AbstractServer] = []
        self._connections = 0
        self._udp_sessions: dict[tuple, tuple] = {}

    async def start_udp(self, address: str, port: int) -> tuple:
        """Listen for datagrams; returns the bound (host, port)."""
        loop = asyncio.get_running_loop()
        sock = _udp_socket(address, port)
        loop.add_reader(sock.fileno(), self._read_datagrams, sock)
        self.sockets.append(sock)
        bound = sock.getsockname()
        log.info("listening for IPFIX over UDP on %s port %d", bound[0], bound[1])
        return bound

    def _read_datagrams(self, sock: socket.socket) -> None:
        """Take every datagram waiting (up to a bound, for fairness) as one burst."""
        datagrams, sessions = [], []
        drained = False
        for _ in range(MAX_DATAGRAMS_PER_WAKEUP):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                drained = True
                break
            except OSError as exc:
                log.warning("udp receive error: %s", exc)
                drained = True
                break
            exporter = self.allowed.check(addr[0])
            if exporter is not None:
                datagrams.append(data)
                sessions.append(self._udp_session(exporter, addr[1]))
        if datagrams:
            if self.on_burst is not None:
                self.on_burst(datagrams, sessions)
            else:
                for data, session in zip(datagrams, sessions):
                    self.handler(data, session)
        if drained and self.on_drained is not None:
            self.on_drained()

    def _udp_session(self, exporter: str, port: int) -> tuple:
        """The session tuple of (exporter, port), the same object each time, so that the
        decoder compares a burst's sessions by identity."""
        key = (exporter, port)
        session = self._udp_sessions.get(key)
        if session is None:
            if len(self._udp_sessions) >= MAX_UDP_SESSIONS:
                self._udp_sessions.clear()
            session = self._udp_sessions[key] = ("udp", exporter, port)
        return session

    async def start_tcp(self, address: str, port: int) -> tuple:
        """Accept IPFIX over TCP; returns the bound (host, port)."""
        server = await asyncio.start_server(self._serve_tcp, address, port)
        self.servers.append(server)
        bound = server.sockets[0].getsockname()
        log.info("listening for IPFIX over TCP on %s port %d", bound[0], bound[1])
        return bound

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer) -> None:
        peer = writer.get_extra_info("peername")
        exporter = self.allowed.check(peer[0])
        if exporter is None:
            log.warning("refused IPFIX connection from unconfigured %s", peer[0])
            writer.close()
            return
        self._connections += 1
        session = ("tcp", exporter, peer[1], self._connections)
        log.info("IPFIX connection from %s port %d", exporter, peer[1])
        try:
            await self._read_messages(reader, session)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            if self.on_session_closed is not None:
                self.on_session_closed(session)
            log.info("IPFIX connection from %s port %d closed", exporter, peer[1])

    async def _read_messages(self, reader: asyncio.StreamReader, session) -> None:
        while True:
            head = await reader.readexactly(MESSAGE_HEADER.size)
            version, length = MESSAGE_HEADER.unpack(head)
            if version != IPFIX_VERSION or length < 16:
                self.metrics.inc("decode_errors")
                self.metrics.inc("decode_error_tcp_framing")
                log.warning(
                    "IPFIX stream from %s lost framing (version %d, length %d); closing it",
                    session[1],
                    version,
                    length,
                )
                return
            self.handler(head + await reader.readexactly(length - MESSAGE_HEADER.size), session)

    async def close(self) -> None:
        """Stop listening."""
        loop = asyncio.get_running_loop()
        for sock in self.sockets:
            loop.remove_reader(sock.fileno())
            sock.close()
        self.sockets.clear()
        for server in self.servers:
            server.close()
            await server.wait_closed()
