"""The engine's exception hierarchy.

The CLI maps each class to one exit code in one place (supreme_cli/exit_codes.py), so
engine code raises the most specific class and never decides how the process ends.
"""

from __future__ import annotations


class SupremeError(Exception):
    """Base class for every error the engine raises on purpose."""


class ConfigError(SupremeError):
    """An invalid configuration value, option or argument. Messages never echo secrets."""


class DataError(SupremeError):
    """A market-data file that cannot be read or fails validation under the chosen policy."""


class StoreError(SupremeError):
    """The store (SQLite or PostgreSQL) cannot be opened, migrated or written."""


class ServiceUnavailable(SupremeError):
    """A required external service (Redis, PostgreSQL, an exchange) cannot be reached."""


class ExchangeError(SupremeError):
    """An exchange refused a request in a way a retry cannot fix (bad symbol, bad order)."""


class ExchangeAuthError(ExchangeError):
    """The exchange rejected the API key or signature. Messages never carry the key."""
