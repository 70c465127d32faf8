"""Structured logging: one JSON object per line on stdout, as Cloud Logging parses it.

Cloud Run forwards stdout to Cloud Logging, which reads ``severity`` and ``message`` from a JSON
line and keeps every other key as ``jsonPayload``, so a batch's events can be queried by
``jsonPayload.batch_id``. Use :func:`get_logger` and pass fields as keywords::

    log = get_logger("coordinator")
    log.info("batch created", batch_id=batch_id, total_items=n)
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

__all__ = ["configure_logging", "get_logger", "JsonFormatter", "StructLogger"]

_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}
_CONFIGURED = False


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with ``severity``, ``message``, ``logger`` and fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, record.levelname),
            "message": record.getMessage(),
            "logger": record.name,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str | None = None) -> None:
    """Route the root logger to stdout as JSON lines (idempotent). ``LOG_LEVEL`` by default."""
    global _CONFIGURED
    root = logging.getLogger()
    root.setLevel((level or os.environ.get("LOG_LEVEL") or "INFO").upper())
    if _CONFIGURED:
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root.handlers = [handler]
    _CONFIGURED = True


class StructLogger:
    """A thin wrapper: ``log.info("message", key=value, ...)`` puts the keys in the JSON line."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def _log(self, level: int, message: str, exc_info: Any = None, **fields: Any) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, message, exc_info=exc_info, extra={"fields": fields})

    def debug(self, message: str, **fields: Any) -> None:
        self._log(logging.DEBUG, message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self._log(logging.INFO, message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._log(logging.WARNING, message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self._log(logging.ERROR, message, **fields)

    def exception(self, message: str, **fields: Any) -> None:
        self._log(logging.ERROR, message, exc_info=True, **fields)


def get_logger(name: str) -> StructLogger:
    return StructLogger(name)
