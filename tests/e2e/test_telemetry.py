"""Production signals end to end: one trace from a command's traceparent through its store writes
to its event and reply (in-memory exporter); Prometheus text on /metrics; JSON log lines."""

import asyncio
import json
import urllib.request
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts import headers, topics
from contracts.client import ContactClient
from service import tracing
from service.bootstrap import Application
from tests.conftest import Endpoints, TopicReader, service_settings, started
from tests.factories import create_contact, ok

pytestmark = pytest.mark.integration

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        yield exporter
    finally:
        tracing.stop()


def _trace_of(record_headers: list[tuple[str, bytes]]) -> str:
    traceparent = dict(record_headers)["traceparent"].decode()
    return traceparent.split("-")[1]


async def test_one_trace_runs_from_a_command_through_its_store_writes_to_its_event_and_reply(
    endpoints: Endpoints, isolation: tuple[str, str], spans: InMemorySpanExporter
) -> None:
    settings = service_settings(endpoints, isolation)
    replies = f"{isolation[0]}replies.traced"
    admin = AIOKafkaAdminClient(bootstrap_servers=endpoints.kafka)
    await admin.start()
    await admin.create_topics([NewTopic(replies, 1, 1)])
    await admin.close()
    async with started(settings):
        producer = AIOKafkaProducer(bootstrap_servers=endpoints.kafka)
        await producer.start()
        command = create_contact("cust-traced", first_name="Traced")
        await producer.send_and_wait(
            settings.topic(topics.COMMANDS),
            command.model_dump_json().encode(),
            key=b"cust-traced",
            headers=[
                ("traceparent", f"00-{TRACE}-{CALLER_SPAN}-01".encode()),
                (headers.REPLY_TO, replies.encode()),
                (headers.CORRELATION_ID, b"c-1"),
            ],
        )
        await producer.stop()
        [event] = await TopicReader(endpoints.kafka, settings.topic(topics.EVENTS)).read(at_least=1)
        [reply] = await TopicReader(endpoints.kafka, replies).read(at_least=1)
    assert json.loads(event.value)["type"] == "contact.created" and json.loads(reply.value)["ok"]
    assert _trace_of(event.headers) == TRACE and _trace_of(reply.headers) == TRACE
    traced = [s for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") == TRACE]
    names = {s.name for s in traced}
    for s in sorted(traced, key=lambda s: s.start_time or 0):  # shown with -s, and on failure
        parent = format(s.parent.span_id, "016x") if s.parent else "-" * 16
        print(f"{format(s.context.span_id, '016x')} <- {parent} {s.kind.name:8} {s.name}")
    assert "apply create_contact" in names
    store = [s for s in traced if (s.attributes or {}).get("db.system") == "mongodb"]
    assert any("insert" in s.name for s in store), names  # the contact's write, in the same trace
    assert any(settings.topic(topics.EVENTS) in s.name for s in traced), names  # the event's publish


async def test_metrics_are_prometheus_text_with_lookup_histograms(
    running_service: Application, client: ContactClient
) -> None:
    created = ok(await client.command(create_contact("cust-m", phone_numbers=[{"number": "+14155550131"}])))
    for _ in range(3):
        assert (await client.lookup_phone("cust-m", "+14155550131")).result == created
    url = f"http://127.0.0.1:{running_service.health.port}/metrics"
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert 'contact_lookup_duration_seconds_bucket{le="0.005",source="' in text
    assert (
        "contact_lookup_duration_seconds_count" in text
        and "contact_command_batch_duration_seconds_count" in text
    )
    assert "faststream_received_messages_total" in text and "contact_replies_total" in text
    assert running_service.metrics.sample("contact_replies_total") >= 4
