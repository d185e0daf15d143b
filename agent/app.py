"""The daemon: wires receive -> decode -> pipeline -> summaries -> spool -> upstream.

Signals: SIGHUP reloads the bundle named in the config (through a private copy, so a
bundle replaced in place really is loaded anew), verifying it first and keeping the
running one if it fails; SIGTERM (or SIGINT) stops listening, scores the partial
batch, closes the open trust window, spools every summary, gives the sender up to the
upstream timeout to deliver, and exits. Nothing accepted is lost: what was not sent
stays in the spool for the next start.
"""

import asyncio
import gc
import logging
import shutil
import signal
import tempfile
import time
from pathlib import Path

from agent.bundle import load_bundle
from agent.config import Config, read_or_create_hash_key, read_secret
from agent.homes import Homes, SubscriberTable
from agent.ipfix import Decoder
from agent.metrics import Metrics, RateLimitedLog, serve_metrics
from agent.pipeline import Batcher, Pipeline
from agent.receive import Receiver
from agent.spool import Spool
from agent.state import load_state, save_state
from agent.summaries import Summaries
from agent.upstream import Uploader, make_target

log = logging.getLogger(__name__)
TICK = 1.0


def build_homes(config: Config) -> Homes:
    """The homes mapper the config describes (prefixes, block sizes, table, hash key)."""
    homes = config.homes
    table = SubscriberTable.read(homes["subscribers"]) if homes["subscribers"] else None
    return Homes(
        homes["prefixes"],
        hash_key=read_or_create_hash_key(homes["hash_key_file"]),
        home_prefix_v4=homes["home_prefix_v4"],
        home_prefix_v6=homes["home_prefix_v6"],
        max_homes=homes["max_homes"],
        subscribers=table,
    )


def load_private_copy(path: Path):
    """Load a bundle through a copy at a fresh path, then remove the copy.

    The dynamic loader hands back the library already loaded when asked again for the
    same path, so reloading a bundle changed in place would keep the old model's code.
    A loaded library stays mapped after its file is removed.
    """
    staging = Path(tempfile.mkdtemp(prefix="iotwatch-bundle-"))
    try:
        shutil.copytree(path, staging / "bundle")
        return load_bundle(staging / "bundle")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class Agent:
    """One running agent; build it, then ``await run()``."""

    def __init__(self, config: Config):
        self.config = config
        self.metrics = Metrics()
        self.bundle = load_bundle(config.model["bundle"])
        self.spool = Spool(
            config.spool["path"],
            config.spool["max_bytes"],
            config.spool["when_full"],
            self.metrics,
        )
        self.summaries = Summaries(
            config.agent["id"],
            self.bundle.digest,
            self.metrics,
            self._to_spool,
            first_seq=self.spool.last_seq + 1,
        )
        self.pipeline = Pipeline(
            self.bundle,
            build_homes(config),
            self.summaries,
            self.metrics,
            method=config.model["threshold"],
            window=config.trust["window"],
            by_flow_time=config.trust["clock"] == "flow",
        )
        load_state(config.spool["path"], self.pipeline.homes, self.pipeline.inventory)
        self.batcher = Batcher(self.pipeline, config.model["batch_size"])
        self.decoder = Decoder(template_lifetime=config.listen["template_lifetime"])
        self.metrics.include("decode_", lambda: self.decoder.counters)
        self.uploader = None
        url = config.upstream["url"]
        if url:
            secret = (
                read_secret(config.upstream["secret_file"]) if url.startswith("http") else None
            )
            target = make_target(url, config.agent["id"], secret, config.upstream["timeout"])
            self.uploader = Uploader(target, self.spool, self.metrics)
        self.receiver = Receiver(
            config.listen["exporters"],
            self.on_message,
            self.metrics,
            on_session_closed=self.decoder.forget_session,
            on_drained=self.on_drained,
            on_burst=self.on_burst,
        )
        self.errors = RateLimitedLog(log)
        self.stopping = asyncio.Event()
        self.bound: dict[str, tuple] = {}
        self._flush_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _to_spool(self, records) -> None:
        self.spool.append([(seq, payload) for seq, payload, _ in records])
        if self.uploader is not None:
            self.uploader.wake.set()

    def on_message(self, message: bytes, session) -> None:
        """One IPFIX message from a configured exporter: decode, batch, maybe score."""
        self.metrics.inc("datagrams_in")
        result = self.decoder.decode_message(message, session)
        if result.error is not None:
            self._decode_failed(session, result.error)
        self._take(result.flows)

    def on_burst(self, datagrams: list[bytes], sessions: list) -> None:
        """Datagrams taken from the UDP socket in one wakeup, decoded in one call."""
        self.metrics.inc("datagrams_in", len(datagrams))
        result = self.decoder.decode_datagrams(datagrams, sessions)
        for index, error in result.errors:
            self._decode_failed(sessions[index], error)
        self._take(result.flows)

    def _decode_failed(self, session, error) -> None:
        self.metrics.inc("decode_errors")
        reason = getattr(error, "code", type(error).__name__)
        self.errors.warning((session[1], reason), "IPFIX from %s: %s", session[1], error)

    def _take(self, flows) -> None:
        """Queue decoded rows for scoring; arm the batch timeout if they must wait."""
        if len(flows) == 0:
            return
        self.metrics.inc("records_in", len(flows))
        self._guarded(self.batcher.add, flows)
        if self.batcher.rows and self._flush_timer is None:
            delay = self.config.model["batch_timeout_ms"] / 1000.0
            self._flush_timer = self._loop.call_later(delay, self._flush_on_timeout)

    def on_drained(self) -> None:
        """The UDP socket is empty for now: score what is waiting.

        A batch costs a fixed ~0.1-0.2 ms on top of its rows, so under light traffic
        scoring on every drain is cheap and keeps latency to one wakeup; under load the
        socket is not found empty until a wakeup's bound, so batches fill to
        ``batch_size`` on their own. The batch timeout covers TCP, which never drains.
        """
        if self.batcher.rows:
            self._guarded(self.batcher.flush)

    def _flush_on_timeout(self) -> None:
        self._flush_timer = None
        self._guarded(self.batcher.flush)

    def _guarded(self, step, *args) -> None:
        """Run a pipeline step; a failure drops that batch, counted, and serving goes on."""
        try:
            step(*args)
        except Exception:
            self.metrics.inc("pipeline_errors")
            log.exception("batch dropped after a pipeline failure")

    async def _ticker(self) -> None:
        """Roll trust windows by the clock and send detection events every interval."""
        interval = self.config.upstream["detection_interval"]
        last_events = time.monotonic()
        while not self.stopping.is_set():
            await asyncio.sleep(TICK)
            if not self.pipeline.by_flow_time:
                self._guarded(self.pipeline.roll, time.time())
            if time.monotonic() - last_events >= interval:
                last_events = time.monotonic()
                self._guarded(self.summaries.flush_detections)

    async def reload(self) -> bool:
        """Load and verify the configured bundle; switch to it only if that succeeded."""
        path = self.config.model["bundle"]
        try:
            bundle = await self._loop.run_in_executor(None, load_private_copy, path)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the running model
            self.metrics.inc("bundle_reload_failures")
            log.error(
                "bundle reload from %s failed, keeping model %s: %s", path, self.bundle.digest, exc
            )
            return False
        self._guarded(self.batcher.flush)
        self.pipeline.set_bundle(bundle, time.time())
        old, self.bundle = self.bundle, bundle
        self.metrics.inc("bundle_reloads")
        log.info("bundle reloaded: model %s replaces %s", bundle.digest, old.digest)
        return True

    async def start(self) -> None:
        """Open the listeners, the metrics port and the sender."""
        self._loop = asyncio.get_running_loop()
        listen = self.config.listen
        if not self.pipeline.by_flow_time:
            self.pipeline.roll(time.time())
        self.bound["udp"] = await self.receiver.start_udp(listen["address"], listen["udp_port"])
        if listen["tcp_port"]:
            self.bound["tcp"] = await self.receiver.start_tcp(
                listen["address"], listen["tcp_port"]
            )
        metrics = self.config.metrics
        if metrics["port"]:
            server = await serve_metrics(self.metrics, metrics["address"], metrics["port"])
            self.bound["metrics"] = server.sockets[0].getsockname()
            self.receiver.servers.append(server)
        if self.uploader is not None:
            self.uploader.start()
        self._loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self.stopping.set)
        gc.freeze()
        log.info("agent %s running, model %s", self.config.agent["id"], self.bundle.digest)

    async def run(self) -> None:
        """Serve until SIGTERM, then flush and stop."""
        await self.start()
        ticker = asyncio.ensure_future(self._ticker())
        await self.stopping.wait()
        ticker.cancel()
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop listening, flush the partial batch and the window, spool, try to deliver."""
        await self.receiver.close()
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        self._guarded(self.batcher.flush)
        self._guarded(self.pipeline.finish, time.time())
        self._guarded(
            save_state, self.config.spool["path"], self.pipeline.homes, self.pipeline.inventory
        )
        if self.uploader is not None:
            timeout = self.config.upstream["timeout"]
            sent = await self._loop.run_in_executor(None, self.uploader.drain, timeout)
            if not sent:
                log.warning(
                    "store not reachable at exit: %d summaries stay spooled",
                    self.metrics.snapshot().get("spool_depth", 0),
                )
            await self._loop.run_in_executor(None, self.uploader.stop)
        self.spool.close()
        log.info("agent stopped; counters %s", self.metrics.snapshot())
