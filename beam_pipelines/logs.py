"""Logging for the CLI and workers: readable text by default, JSON lines for log shippers.

A filter masks secrets before any handler sees a record: passwords in DSNs and
URLs (``scheme://user:secret@host``) and the values of environment variables
whose names say they hold secrets.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import msgspec

from schemas.secrets import redact

__all__ = ["configure_logging", "redact"]

# Harmless import-time notices from optional Beam IO modules otsec does not use.
_IGNORED = ("apitools not found", "bigquery client libraries are not available")


# Client libraries log each retry and failure they then raise; otsec reports those
# itself, once, with the store named.
_QUIET_BELOW_ERROR = ("urllib3", "clickhouse_connect", "psycopg")


class _RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR and record.name.startswith(_QUIET_BELOW_ERROR):
            return logging.getLogger().level <= logging.DEBUG
        message = record.getMessage()
        if record.levelno < logging.ERROR and any(text in message for text in _IGNORED):
            return False
        record.msg = redact(message)
        record.args = None
        return True


class _TextFormatter(logging.Formatter):
    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return msgspec.json.encode(entry).decode()


def configure_logging(fmt: str = "text", level: str = "INFO") -> None:
    """Send logs to standard error in ``fmt`` (``text`` or ``json``) at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RedactFilter())
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Beam logs every stage of every bundle at INFO; keep the operator's terminal
    # for what matters.
    logging.getLogger("apache_beam").setLevel(max(logging.WARNING, root.level))
