"""Database URLs, connections for SQLite and PostgreSQL, and the schema migrations.

``sqlite:///relative/path`` or ``sqlite:////absolute/path`` (embedded, WAL mode) and
``postgresql://user@host:port/db`` (psycopg 3). SQL in this package is written once with
``?`` placeholders; ``Database.sql`` turns it into the dialect's form.
"""

import contextlib
import logging
import re
import sqlite3
import time
from importlib import resources
from pathlib import Path

from store.errors import ConfigError, DatabaseUnavailable

log = logging.getLogger(__name__)

DEFAULT_URL = "sqlite:///iotwatch-store.db"
SQLITE_BUSY_MS = 30_000
PG_CONNECT_TIMEOUT = 5
PG_MIGRATION_LOCK = 7_240_001
MIGRATION_FILE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")

try:
    import psycopg
except ImportError:
    psycopg = None

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)
if psycopg is not None:
    TRANSIENT_ERRORS += (psycopg.OperationalError, psycopg.InterfaceError)


class Database:
    """One database named by URL: opens connections and speaks its dialect."""

    def __init__(self, url: str = DEFAULT_URL):
        self.url = url
        self._sql_cache: dict[str, str] = {}
        if url.startswith("sqlite:///"):
            self.dialect = "sqlite"
            self.path = url[len("sqlite:///") :]
            if not self.path:
                raise ConfigError(f"{url}: sqlite URL needs a file path")
        elif url.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
            self.path = None
            if psycopg is None:
                raise ConfigError("postgresql URL given but psycopg is not installed")
        else:
            raise ConfigError(f"{url}: database URL must start with sqlite:/// or postgresql://")

    def __repr__(self) -> str:
        return f"Database({redact(self.url)!r})"

    def sql(self, text: str) -> str:
        """``text`` with ``?`` placeholders in this dialect's style."""
        if self.dialect == "sqlite":
            return text
        converted = self._sql_cache.get(text)
        if converted is None:
            converted = self._sql_cache[text] = text.replace("?", "%s")
        return converted

    def connect(self, *, autocommit: bool = False):
        """A new DB-API connection; writes begin with ``begin(conn)``, end with commit()."""
        if self.dialect == "sqlite":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=SQLITE_BUSY_MS / 1000,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
            return conn
        return psycopg.connect(
            self.url,
            autocommit=autocommit,
            prepare_threshold=None,
            connect_timeout=PG_CONNECT_TIMEOUT,
        )

    def begin(self, conn) -> None:
        """Start a write transaction (SQLite takes the write lock at once)."""
        if self.dialect == "sqlite":
            conn.execute("BEGIN IMMEDIATE")

    def pipeline(self, conn):
        """A context in which PostgreSQL statements are sent without waiting for each
        answer (psycopg's pipeline mode); nothing for SQLite."""
        if self.dialect == "postgresql":
            return conn.pipeline()
        return contextlib.nullcontext()

    def migrate(self) -> int:
        """Apply every migration not yet recorded in schema_version; the version reached."""
        try:
            conn = self.connect()
        except TRANSIENT_ERRORS as exc:
            raise DatabaseUnavailable(f"{redact(self.url)}: {exc}") from exc
        try:
            return self._migrate(conn)
        finally:
            conn.close()

    def _migrate(self, conn) -> int:
        """Migrations under one lock, so concurrent store processes apply each once."""
        self.begin(conn)
        if self.dialect == "postgresql":
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (PG_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
            " applied_at DOUBLE PRECISION NOT NULL)"
        )
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = row[0] or 0

        for version, name, text in migrations():
            if version <= current:
                continue
            log.info("applying migration version=%d file=%s", version, name)
            for statement in split_statements(text):
                conn.execute(statement)
            conn.execute(
                self.sql("INSERT INTO schema_version VALUES (?, ?)"), (version, time.time())
            )
            current = version
        conn.commit()
        return current


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of the packaged migrations, in order."""
    found = []
    for entry in resources.files("store.migrations").iterdir():
        match = MIGRATION_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def split_statements(text: str) -> list[str]:
    """Statements of a migration file: ``--`` comment lines dropped, split at ``;``."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def redact(url: str) -> str:
    """The URL without a password, for logs and messages."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
