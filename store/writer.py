"""The writers: threads that store summaries in batches, answering each request.

Request handlers hand validated summaries to ``Writer.submit`` and await the outcome.
Each writer thread ("lane") owns one connection, takes whatever is queued (up to
``max_batch``), writes it in one transaction and resolves every waiting request. If a
batch fails for a reason other than the database being unreachable, each summary is
retried alone so a single bad one cannot sink the rest; a lost connection is reopened on
the next batch. SQLite gets one lane (it has one writer at a time anyway); PostgreSQL
gets two, so one batch is built while the other waits on the server. The queue is
bounded: when full, ``submit`` fails at once and the agent retries later.
"""

import asyncio
import logging
import queue
import threading
from logging import ERROR, WARNING

from store.database import TRANSIENT_ERRORS, Database, psycopg, redact
from store.errors import DatabaseUnavailable
from store.logs import quietly
from store.persist import write_batch
from store.summary import Summary

log = logging.getLogger(__name__)

MAX_BATCH = 500
MAX_QUEUE = 20_000
MAX_QUEUED_BYTES = 64 << 20
RETRIES_ON_CONFLICT = 3
LANES = {"sqlite": 1, "postgresql": 2}
STATUSES = ("stored", "duplicate")
_STOP = object()


class Writer:
    """Writer threads fed through one bounded queue; ``counters`` counts outcomes."""

    def __init__(
        self,
        db: Database,
        max_batch: int = MAX_BATCH,
        max_queue: int = MAX_QUEUE,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
    ):
        self.db = db
        self.max_batch = max_batch
        self.max_queued_bytes = max_queued_bytes
        self.queued_bytes = 0
        self.counters = dict.fromkeys(
            ("batches", "stored", "duplicate", "failed", "reconnects", "queue_full"), 0
        )
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue(max_queue)
        self._lanes = [_Lane(self, i) for i in range(LANES[db.dialect])]

    def start(self) -> None:
        """Start the writer threads."""
        for lane in self._lanes:
            lane.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then close the connections and end the threads."""
        alive = [lane.thread for lane in self._lanes if lane.thread.is_alive()]
        for _ in alive:
            self._queue.put(_STOP)
        for thread in alive:
            thread.join(timeout)

    async def submit(self, summary: Summary, received: float, size: int = 0) -> str:
        """Store one summary (``size``: its body's bytes, counted against the queue's
        budget until written): "stored" or "duplicate"; raises DatabaseUnavailable."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            if self.queued_bytes + size > self.max_queued_bytes:
                self.counters["queue_full"] += 1
                raise DatabaseUnavailable("write queue full")
            try:
                self._queue.put_nowait((summary, received, future, loop))
            except queue.Full:
                self.counters["queue_full"] += 1
                raise DatabaseUnavailable("write queue full") from None
            self.queued_bytes += size
        try:
            return await future
        finally:
            with self._lock:
                self.queued_bytes -= size

    def count(self, name: str, n: int = 1) -> None:
        """Add to a counter (lanes count from their own threads)."""
        with self._lock:
            self.counters[name] += n

    def next_batch(self) -> list | None:
        """Block for the next batch; None when told to stop."""
        first = self._queue.get()
        if first is _STOP:
            return None
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)
                break
            batch.append(item)
        return batch


class _Lane:
    """One writer thread and its connection."""

    def __init__(self, writer: Writer, index: int):
        self.writer = writer
        self.db = writer.db
        self.conn = None
        self.thread = threading.Thread(target=self._run, name=f"store-writer-{index}", daemon=True)

    def _run(self) -> None:
        """Write batches until told to stop."""
        while (batch := self.writer.next_batch()) is not None:
            self._write(batch)
        self._close()

    def _write(self, batch: list) -> None:
        """Store a batch; a database fault fails it whole, any other error is isolated by
        retrying each summary in a transaction of its own."""
        pairs = [(summary, received) for summary, received, _, _ in batch]
        try:
            outcomes = self._attempt(pairs)
        except (DatabaseUnavailable, *TRANSIENT_ERRORS) as exc:
            quietly(log, WARNING, "batch", "batch not stored size=%d error=%s", len(batch), exc)
            self._resolve(batch, [DatabaseUnavailable(str(exc))] * len(batch))
            return
        except Exception as exc:  # noqa: BLE001 - isolate the culprit, keep serving
            log.warning("batch failed size=%d error=%s; retrying one by one", len(batch), exc)
            outcomes = [self._write_alone(pair) for pair in pairs]
        self._resolve(batch, outcomes)

    def _write_alone(self, pair: tuple[Summary, float]):
        """One summary in its own transaction: its status, or the error to answer with."""
        try:
            return self._attempt([pair])[0]
        except Exception as exc:  # noqa: BLE001 - answered as 503, the agent retries
            quietly(
                log,
                ERROR,
                "summary",
                "summary not stored agent=%s seq=%d error=%s",
                pair[0].agent,
                pair[0].seq,
                exc,
            )
            return DatabaseUnavailable(str(exc))

    def _attempt(self, pairs: list) -> list[str]:
        """One transaction, repeated when the server aborted it for a deadlock."""
        for attempt in range(1, RETRIES_ON_CONFLICT + 1):
            conn = self._connection()
            try:
                return write_batch(self.db, conn, pairs)
            except BaseException as exc:
                self._rollback()
                if attempt == RETRIES_ON_CONFLICT or not _is_conflict(exc):
                    raise
                log.info("transaction conflict, retrying attempt=%d error=%s", attempt, exc)
        raise AssertionError("unreachable")

    def _connection(self):
        """The open write connection, reopened after a loss."""
        if self.conn is None:
            try:
                self.conn = self.db.connect()
            except TRANSIENT_ERRORS as exc:
                raise DatabaseUnavailable(f"{redact(self.db.url)}: {exc}") from exc
            self.writer.count("reconnects")
        return self.conn

    def _rollback(self) -> None:
        """Undo the open transaction; drop the connection if it is broken."""
        try:
            self.conn.rollback()
        except Exception:  # noqa: BLE001 - a connection that cannot roll back is dropped
            self._close()
            return
        if getattr(self.conn, "broken", False) or getattr(self.conn, "closed", False):
            self._close()

    def _close(self) -> None:
        """Close the write connection, ignoring a dead one's complaints."""
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                log.debug("closing a broken connection failed", exc_info=True)
            self.conn = None

    def _resolve(self, batch: list, outcomes: list) -> None:
        """Hand each outcome (a status or an exception) to its waiting request."""
        self.writer.count("batches")
        for (_, _, future, loop), outcome in zip(batch, outcomes):
            self.writer.count(outcome if isinstance(outcome, str) else "failed")
            try:
                loop.call_soon_threadsafe(_settle, future, outcome)
            except RuntimeError:
                log.debug("event loop closed before a write finished")


def _is_conflict(exc: BaseException) -> bool:
    """A deadlock or serialization failure: the same transaction may simply be rerun."""
    return psycopg is not None and isinstance(exc, psycopg.errors.TransactionRollbackError)


def _settle(future: asyncio.Future, outcome) -> None:
    """Set a result or exception unless the request has gone away."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
