"""Logging: plain text for people, or one JSON object a line (python-json-logger) for shippers,
each line carrying the message being handled (topic, partition, offset, command or correlation
id) and the current trace id."""

import contextlib
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Literal

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

_CONTEXT: ContextVar[dict[str, Any]] = ContextVar("contact_service_log_context", default={})  # noqa: B039
TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Fields every log line written inside the block carries (nested blocks add to them)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def record_fields(record: Any) -> dict[str, Any]:
    """Where a Kafka record came from, for ``log_context``."""
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


class _Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get().items():
            setattr(record, key, value)
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            record.trace_id = format(span.trace_id, "032x")
            record.span_id = format(span.span_id, "016x")
        return True


def configure(*, level: str, fmt: Literal["text", "json"]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                timestamp=False,
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT))
    handler.addFilter(_Context())
    logging.basicConfig(level=level, handlers=[handler], force=True)
