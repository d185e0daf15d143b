"""Database URLs and the versioned schema migrations, on SQLite and PostgreSQL."""

import pytest
from store_fixtures import count_rows

from store import database
from store.database import Database, redact, split_statements
from store.errors import ConfigError, DatabaseUnavailable

pytest_plugins = ["store_fixtures"]


def test_migrations_run_once(db_url):
    """Migrating twice applies each version once and records it."""
    db = Database(db_url)
    latest = database.migrations()[-1][0]
    assert db.migrate() == latest
    assert db.migrate() == latest
    assert count_rows(db_url, "schema_version") == len(database.migrations())
    assert count_rows(db_url, "ingest_log") == 0


def test_a_later_migration_is_applied_on_top(db_url, monkeypatch):
    """A new migration file is applied at the next start, after the earlier ones."""
    db = Database(db_url)
    db.migrate()
    extra = (
        999,
        "999_probe.sql",
        "-- a probe\nCREATE TABLE probe (x INTEGER);\nINSERT INTO probe VALUES (7);",
    )
    known = database.migrations()
    monkeypatch.setattr(database, "migrations", lambda: [*known, extra])
    assert db.migrate() == 999
    assert db.migrate() == 999
    assert count_rows(db_url, "probe") == 1


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite:///", "sqlite://relative.db", ""])
def test_bad_urls_are_refused(url):
    """Only sqlite:///path and postgresql:// URLs are accepted."""
    with pytest.raises(ConfigError):
        Database(url)


def test_unreachable_postgresql_is_unavailable():
    """Migrating against a server that is not there raises DatabaseUnavailable."""
    pytest.importorskip("psycopg")
    with pytest.raises(DatabaseUnavailable):
        Database("postgresql://nobody@127.0.0.1:1/none").migrate()


def test_statement_splitting_and_redaction():
    """Migration files split at semicolons without comments; passwords never shown."""
    text = "-- header\nCREATE TABLE a (x INT);\n\n-- note\nCREATE INDEX b ON a (x);\n"
    assert split_statements(text) == ["CREATE TABLE a (x INT)", "CREATE INDEX b ON a (x)"]
    assert redact("postgresql://u:pw@h:5/db") == "postgresql://u:***@h:5/db"
