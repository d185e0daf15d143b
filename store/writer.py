"""The single writer: one thread that stores summaries in batches, answering each request.

Request handlers hand validated summaries to ``Writer.submit`` and await the outcome.
The thread takes whatever is queued (up to ``max_batch``), writes it in one transaction
and resolves every waiting request. If a batch fails, each summary is retried alone so a
single bad one cannot sink the rest; a lost connection is reopened on the next batch.
The queue is bounded: when full, ``submit`` fails at once and the agent retries later.
"""

import asyncio
import logging
import queue
import threading

from store.database import TRANSIENT_ERRORS, Database, psycopg, redact
from store.errors import DatabaseUnavailable
from store.persist import write_batch
from store.summary import Summary

log = logging.getLogger(__name__)

MAX_BATCH = 500
MAX_QUEUE = 20_000
RETRIES_ON_CONFLICT = 3
_STOP = object()


class Writer:
    """A thread owning one write connection, fed through a bounded queue."""

    def __init__(self, db: Database, max_batch: int = MAX_BATCH, max_queue: int = MAX_QUEUE):
        self.db = db
        self.max_batch = max_batch
        self.counters = {"batches": 0, "stored": 0, "duplicate": 0, "failed": 0,
                         "reconnects": 0, "queue_full": 0}
        self._queue: queue.Queue = queue.Queue(max_queue)
        self._conn = None
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish what is queued, then close the connection and end the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    async def submit(self, summary: Summary, received: float) -> str:
        """Store one summary: "stored" or "duplicate"; raises DatabaseUnavailable."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        try:
            self._queue.put_nowait((summary, received, future, loop))
        except queue.Full:
            self.counters["queue_full"] += 1
            raise DatabaseUnavailable("write queue full") from None
        return await future

    def _run(self) -> None:
        """Take batches off the queue until told to stop."""
        while True:
            first = self._queue.get()
            if first is _STOP:
                break
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
            self._write(batch)
        self._close()

    def _write(self, batch: list) -> None:
        """Store a batch; a database fault fails it whole, any other error is isolated by
        retrying each summary in a transaction of its own."""
        pairs = [(summary, received) for summary, received, _, _ in batch]
        try:
            outcomes = self._attempt(pairs)
        except (DatabaseUnavailable, *TRANSIENT_ERRORS) as exc:
            log.warning("batch not stored size=%d error=%s", len(batch), exc)
            self._resolve(batch, [DatabaseUnavailable(str(exc))] * len(batch))
            return
        except Exception as exc:
            log.warning("batch failed size=%d error=%s; retrying one by one", len(batch),
                        exc)
            outcomes = [self._write_alone(pair) for pair in pairs]
        self._resolve(batch, outcomes)

    def _write_alone(self, pair: tuple[Summary, float]):
        """One summary in its own transaction: its status, or the error to answer with."""
        try:
            return self._attempt([pair])[0]
        except Exception as exc:
            log.error("summary not stored agent=%s seq=%d error=%s", pair[0].agent,
                      pair[0].seq, exc)
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
        if self._conn is None:
            try:
                self._conn = self.db.connect()
            except TRANSIENT_ERRORS as exc:
                raise DatabaseUnavailable(f"{redact(self.db.url)}: {exc}") from exc
            self.counters["reconnects"] += 1
        return self._conn

    def _rollback(self) -> None:
        """Undo the open transaction; drop the connection if it is broken."""
        try:
            self._conn.rollback()
        except Exception:
            self._close()
            return
        if getattr(self._conn, "broken", False) or getattr(self._conn, "closed", False):
            self._close()

    def _close(self) -> None:
        """Close the write connection, ignoring a dead one's complaints."""
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                log.debug("closing a broken connection failed", exc_info=True)
            self._conn = None

    def _resolve(self, batch: list, outcomes: list) -> None:
        """Hand each outcome (a status or an exception) to its waiting request."""
        self.counters["batches"] += 1
        for (_, _, future, loop), outcome in zip(batch, outcomes):
            key = outcome if isinstance(outcome, str) else "failed"
            self.counters[key] += 1
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

