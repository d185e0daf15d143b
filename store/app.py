"""The store's HTTP service (aiohttp): signed ingest, the read-only JSON API and the page.

``make_app(settings)`` builds the application; ``serve(settings)`` runs it until
interrupted; ``StoreServer`` runs it on a background thread for tests and the demo.
"""

import asyncio
import json
import logging
import multiprocessing
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from logging import INFO, WARNING
from typing import Self

from aiohttp import web

from store import auth, page, queries
from store.database import TRANSIENT_ERRORS, Database
from store.errors import DatabaseUnavailable, SummaryError
from store.logs import quietly
from store.summary import Rules, parse
from store.writer import MAX_BATCH, STATUSES, Writer

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:8080"
DEFAULT_REPLAY_WINDOW = 300.0
DEFAULT_MAX_BODY = 1 << 20
READ_THREADS = 2
STATUS_BODIES = {status: json.dumps({"status": status}).encode() for status in STATUSES}


@dataclass
class Settings:
    """Everything the service needs; the command line fills it."""

    db_url: str
    secrets: dict[str, bytes]
    rules: Rules = field(default_factory=Rules)
    replay_window: float = DEFAULT_REPLAY_WINDOW
    max_body: int = DEFAULT_MAX_BODY
    alert_level: float = queries.DEFAULT_ALERT_LEVEL
    alert_run_level: float = queries.DEFAULT_RUN_LEVEL
    max_batch: int = MAX_BATCH


SETTINGS_KEY = web.AppKey("settings", Settings)
DB_KEY = web.AppKey("db", Database)
WRITER_KEY = web.AppKey("writer", Writer)
COUNTERS_KEY = web.AppKey("counters", dict)


class Reader:
    """Read queries on a small thread pool, one connection per thread."""

    def __init__(self, db: Database):
        self.db = db
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="store-read")
        self._conns: list = []

    async def run(self, query, **kwargs) -> list[dict]:
        """Run ``query(db, conn, **kwargs)`` off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._call, query, kwargs)

    def _call(self, query, kwargs: dict) -> list[dict]:
        """The query on this thread's connection, reopened once if it was lost."""
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            try:
                if conn is None:
                    conn = self._local.conn = self.db.connect(autocommit=True)
                    self._conns.append(conn)
                return query(self.db, conn, **kwargs)
            except TRANSIENT_ERRORS as exc:
                self._local.conn = None
                if conn is not None:
                    self._conns.remove(conn)
                    _close_quietly(conn)
                if attempt == 2:
                    raise DatabaseUnavailable(str(exc)) from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Stop the threads and close their connections."""
        self._pool.shutdown(wait=True)
        for conn in self._conns:
            _close_quietly(conn)


READER_KEY = web.AppKey("reader", Reader)


def _close_quietly(conn) -> None:
    """Close a connection that may already be dead."""
    try:
        conn.close()
    except Exception:
        log.debug("closing a read connection failed", exc_info=True)


def _error(status: int, message: str, field_name: str | None = None) -> web.Response:
    """A JSON error answer."""
    body = {"error": message}
    if field_name is not None:
        body["field"] = field_name
    return web.json_response(body, status=status)


async def ingest(request: web.Request) -> web.Response:
    """POST /api/v1/ingest: authenticate, validate, store once."""
    settings: Settings = request.app[SETTINGS_KEY]
    counters = request.app[COUNTERS_KEY]
    if request.content_length is not None and request.content_length > settings.max_body:
        counters["too_large"] += 1
        return _error(413, f"body over {settings.max_body} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        counters["too_large"] += 1
        return _error(413, f"body over {settings.max_body} bytes")

    agent_id, reason = auth.check(request.headers, body, settings.secrets, settings.replay_window)
    if agent_id is None:
        counters["unauthorized"] += 1
        quietly(
            log, INFO, "unauthorized", "ingest refused remote=%s reason=%s", request.remote, reason
        )
        return _error(401, reason)

    try:
        summary = parse(body, agent_id, settings.rules)
    except SummaryError as exc:
        counters["invalid"] += 1
        quietly(
            log,
            INFO,
            "invalid",
            "summary rejected agent=%s field=%s reason=%s",
            agent_id,
            exc.field,
            exc.reason,
        )
        return _error(400, exc.reason, exc.field)

    try:
        status = await request.app[WRITER_KEY].submit(summary, time.time(), len(body))
    except DatabaseUnavailable as exc:
        counters["unavailable"] += 1
        quietly(log, WARNING, "unavailable", "summary not stored agent=%s error=%s", agent_id, exc)
        return _error(503, "database unavailable, try again later")
    return web.Response(body=STATUS_BODIES[status], content_type="application/json")


def _query_args(request: web.Request, names: tuple[str, ...]) -> dict:
    """Filters from the query string; raises HTTPBadRequest naming a bad one."""
    args = {}
    for name in names:
        value = request.query.get(name)
        if value is None or value == "":
            continue
        try:
            if name == "since":
                value = queries.parse_time(value)
            elif name == "limit":
                value = int(value)
            elif name in ("level", "run_level"):
                value = float(value)
        except ValueError:
            raise web.HTTPBadRequest(
                text=f'{{"error": "bad value", "field": "{name}"}}',
                content_type="application/json",
            ) from None
        args[name] = value
    return args


async def _answer(request: web.Request, query, **kwargs) -> web.Response:
    """A query's rows as JSON, or 503 when the database is away."""
    try:
        rows = await request.app[READER_KEY].run(query, **kwargs)
    except DatabaseUnavailable as exc:
        quietly(log, WARNING, "read", "query failed error=%s", exc)
        return _error(503, "database unavailable, try again later")
    return web.json_response(rows)


async def api_homes(request: web.Request) -> web.Response:
    """GET /api/v1/homes."""
    return await _answer(request, queries.homes, **_query_args(request, ("since", "limit")))


async def api_devices(request: web.Request) -> web.Response:
    """GET /api/v1/homes/{home}/devices."""
    args = _query_args(request, ("device_type", "since", "limit"))
    return await _answer(request, queries.devices, home=request.match_info["home"], **args)


async def api_trust(request: web.Request) -> web.Response:
    """GET /api/v1/trust?home=&device_type=&since=&limit=."""
    args = _query_args(request, ("home", "device_type", "since", "limit"))
    return await _answer(request, queries.trust, **args)


async def api_alerts(request: web.Request) -> web.Response:
    """GET /api/v1/alerts?level=&run_level=&home=&device_type=."""
    args = _query_args(request, ("level", "run_level", "home", "device_type", "limit"))
    args.setdefault("level", request.app[SETTINGS_KEY].alert_level)
    args.setdefault("run_level", request.app[SETTINGS_KEY].alert_run_level)
    return await _answer(request, queries.alerts, **args)


async def api_agents(request: web.Request) -> web.Response:
    """GET /api/v1/agents: sequence numbers and gaps per agent."""
    return await _answer(request, queries.agents)


async def api_status(request: web.Request) -> web.Response:
    """GET /api/v1/status: refusals by reason and the writer's counters since start."""
    return web.json_response(
        {"ingest": request.app[COUNTERS_KEY], "writer": request.app[WRITER_KEY].counters}
    )


async def index(request: web.Request) -> web.Response:
    """GET /: the operators' page."""
    settings: Settings = request.app[SETTINGS_KEY]
    try:
        html = await request.app[READER_KEY].run(
            page.render,
            level=settings.alert_level,
            run_level=settings.alert_run_level,
            home=request.query.get("home") or None,
        )
    except DatabaseUnavailable as exc:
        quietly(log, WARNING, "read", "page failed error=%s", exc)
        return web.Response(status=503, text="database unavailable, try again later")
    return web.Response(text=html, content_type="text/html", charset="utf-8")


async def _start(app: web.Application) -> None:
    """Migrate the schema, then start the writer and the readers."""
    db = app[DB_KEY]
    await asyncio.get_running_loop().run_in_executor(None, db.migrate)
    app[WRITER_KEY].start()
    app[READER_KEY] = Reader(db)


async def _stop(app: web.Application) -> None:
    """Drain the writer and close connections."""
    await asyncio.get_running_loop().run_in_executor(None, app[WRITER_KEY].stop)
    app[READER_KEY].close()


def make_app(settings: Settings) -> web.Application:
    """The aiohttp application for ``settings``."""
    app = web.Application(client_max_size=settings.max_body)
    db = Database(settings.db_url)
    app[SETTINGS_KEY] = settings
    app[DB_KEY] = db
    app[WRITER_KEY] = Writer(db, max_batch=settings.max_batch)
    app[COUNTERS_KEY] = {"too_large": 0, "unauthorized": 0, "invalid": 0, "unavailable": 0}
    app.router.add_post("/api/v1/ingest", ingest)
    app.router.add_get("/api/v1/homes", api_homes)
    app.router.add_get("/api/v1/homes/{home}/devices", api_devices)
    app.router.add_get("/api/v1/trust", api_trust)
    app.router.add_get("/api/v1/alerts", api_alerts)
    app.router.add_get("/api/v1/agents", api_agents)
    app.router.add_get("/api/v1/status", api_status)
    app.router.add_get("/", index)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app


def split_listen(listen: str) -> tuple[str, int]:
    """(host, port) from "host:port" or "[v6]:port"."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{listen!r}: expected host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


def serve(settings: Settings, listen: str = DEFAULT_LISTEN, processes: int = 1) -> None:
    """Run the service in the foreground until interrupted; with ``processes`` > 1, that
    many processes share the listening port (SO_REUSEPORT) and the database."""
    host, port = split_listen(listen)
    if processes <= 1:
        _serve_one(settings, host, port, reuse_port=False)
        return
    if port == 0:
        raise ValueError("several processes need a fixed --listen port")

    Database(settings.db_url).migrate()
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(
            target=_serve_one,
            args=(settings, host, port, True, logging.getLogger().level),
            name=f"store-{i}",
        )
        for i in range(processes)
    ]
    for child in children:
        child.start()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.is_set() and all(child.is_alive() for child in children):
        stop.wait(0.5)
    for child in children:
        child.terminate()
    for child in children:
        child.join(30)


def _serve_one(
    settings: Settings, host: str, port: int, reuse_port: bool, log_level: int | None = None
) -> None:
    """One serving process (log_level: set up logging in a spawned child)."""
    if log_level is not None:
        logging.basicConfig(
            level=log_level, format="%(asctime)s %(levelname)s %(process)d %(name)s %(message)s"
        )
    web.run_app(
        make_app(settings),
        host=host,
        port=port,
        reuse_port=reuse_port or None,
        print=None,
        access_log=None,
        handle_signals=True,
    )


class StoreServer:
    """The service on a background thread and loop: ``start()`` -> url, ``stop()``."""

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int = 0):
        self.settings = settings
        self.host, self.port = host, port
        self.url = ""
        self.app: web.Application | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, name="store-server", daemon=True)

    def start(self, timeout: float = 30.0) -> str:
        """Start serving; the base URL (http://host:port)."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("store server did not start")
        if self._error is not None:
            raise self._error
        return self.url

    def _run(self) -> None:
        """The thread: set up the runner, then run the loop until stopped."""
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._setup())
        except BaseException as exc:  # noqa: BLE001 - handed to start() to raise
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    async def _setup(self) -> None:
        """Bind the listening socket."""
        self.app = make_app(self.settings)
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{port}"

    def stop(self) -> None:
        """Stop serving and wait for the writer to finish."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
