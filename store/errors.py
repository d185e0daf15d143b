"""Errors the store raises, each saying what was wrong and where.

StoreError
├── ConfigError (ValueError)     a bad agents file, device types file or option
├── SummaryError (ValueError)    a summary that fails validation; ``field`` names it
└── DatabaseUnavailable          the database refused or lost a write; retry later
"""


class StoreError(Exception):
    """Base of every error raised by the store's own code."""


class ConfigError(StoreError, ValueError):
    """A configuration file or option the store cannot use."""


class SummaryError(StoreError, ValueError):
    """A summary that is malformed; ``field`` is the dotted path of the culprit."""

    def __init__(self, field: str, reason: str):
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class DatabaseUnavailable(StoreError):
    """The database could not store a batch (down, locked, or failed mid-transaction)."""
