"""OpenTelemetry tracing, configured by the standard OTEL_* variables and off (the API's no-op
tracer, nothing installed) when none is set.

A request's W3C trace context (``traceparent``) continues in the span that applies it, in the store
calls it makes (PyMongo's instrumentation), in the change events it causes and in its reply; a
dead letter keeps the original headers, ``traceparent`` included. Commands are applied in batches,
so each command's context is kept by command id until its events are published.
"""

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context

tracer = trace.get_tracer("contact-service")
_CAUSES: ContextVar[dict[str, Context]] = ContextVar("contact_service_causes", default={})  # noqa: B039
_ENABLED = False


def wanted() -> bool:
    """Whether the environment asks for traces (an exporter or an OTLP endpoint is named)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "")
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    return exporter not in ("", "none") or bool(endpoint)


def configure_from_environment() -> bool:
    """Install a tracer provider exporting as OTEL_* say; False (and nothing done) when unset."""
    if not wanted():
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp") == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # endpoint, headers, timeout: from OTEL_EXPORTER_OTLP_*
    provider = TracerProvider(resource=Resource.create({"service.name": "contact-service"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    use(provider)
    return True


def use(provider: Any) -> None:
    """Trace through ``provider`` (the environment's, or a test's in-memory one)."""
    global _ENABLED
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

    trace.set_tracer_provider(provider)
    PymongoInstrumentor().instrument(tracer_provider=provider)
    _ENABLED = True


def stop() -> None:
    """Stop tracing (tests): spans are no longer made; the provider set stays the process's."""
    global _ENABLED
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

    PymongoInstrumentor().uninstrument()
    _ENABLED = False


def enabled() -> bool:
    return _ENABLED


def extract(headers: Any) -> Context:
    """The trace context a Kafka record's headers carry (an empty one when none)."""
    carrier = {k: (v or b"").decode("latin-1") for k, v in headers or ()}
    return propagate.extract(carrier)


def inject() -> list[tuple[str, bytes]]:
    """Headers carrying the current trace context (none when nothing is traced)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(k, v.encode()) for k, v in carrier.items()]


def continuing(headers: Any) -> list[tuple[str, bytes]]:
    """Trace headers for the answer to a record: they continue the caller's trace, from the current
    span when it is part of that trace (a lookup's), else from the record's own context (a batch's
    spans are not); none when tracing is off."""
    if not _ENABLED:
        return []
    caller = extract(headers)
    theirs = trace.get_current_span(caller).get_span_context()
    mine = trace.get_current_span().get_span_context()
    if mine.is_valid and (not theirs.is_valid or mine.trace_id == theirs.trace_id):
        return inject()
    token = otel_context.attach(caller)
    try:
        return inject()
    finally:
        otel_context.detach(token)


@contextlib.contextmanager
def causes(contexts: dict[str, Context]) -> Iterator[None]:
    """While the block runs, events caused by these command ids are published in their contexts."""
    token = _CAUSES.set({**_CAUSES.get(), **contexts})
    try:
        yield
    finally:
        _CAUSES.reset(token)


def as_cause_of(event: dict[str, Any]) -> contextlib.AbstractContextManager[None]:
    """The block runs in the trace context of the command that caused ``event``, when known."""
    return in_context_of(str(event.get("cause", {}).get("command_id", "")).split("#", 1)[0])


@contextlib.contextmanager
def in_context_of(command_id: str) -> Iterator[None]:
    """The block runs in the trace context kept for ``command_id`` (as it is, when none is kept)."""
    found = _CAUSES.get().get(command_id)
    if found is None:
        yield
        return
    token = otel_context.attach(found)
    try:
        yield
    finally:
        otel_context.detach(token)
