"""Caller identity over request/reply on the real broker and store: many concurrent callers, misses,
tenant scoping, bad numbers, deadlines, and Spring Kafka's ReplyingKafkaTemplate headers."""

import asyncio
import json
import random
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts import commands as c
from contracts import headers, topics
from contracts.client import ContactClient, RequestTimeout
from contracts.replies import BatchLookupReply, ContactReply, ErrorReply
from service.bootstrap import Application
from tests.conftest import Endpoints, TopicReader
from tests.factories import cid, present

pytestmark = pytest.mark.integration

ACME = "cust-acme"
GLOBEX = "cust-globex"


def phone(i: int) -> str:
    return f"+1555{7000000 + i:07d}"


async def load(client: ContactClient, customer: str, count: int) -> dict[str, str]:
    """Bulk-create ``count`` contacts with one phone each; returns phone → contact id."""
    reply = await client.bulk_create(
        c.BulkCreateContacts(
            command_id=cid(),
            customer_id=customer,
            contacts=[
                {
                    "first_name": f"Caller {i}",
                    "external_id": f"crm-{i}",
                    "phone_numbers": [{"number": phone(i), "type": "mobile"}],
                    "emails": [{"address": f"caller{i}@example.com", "type": "work"}],
                }
                for i in range(count)
            ],
        )
    )
    assert reply.ok and reply.created == count, reply.errors
    return {c.phone_numbers[0].number_e164: c.id for c in reply.contacts}


async def test_hundreds_of_concurrent_lookups_from_two_clients_get_their_own_answers(
    running_service: Application, client: ContactClient, endpoints: Endpoints, isolation: tuple[str, str]
) -> None:
    owners = await load(client, ACME, 60)
    numbers = sorted(owners)
    async with ContactClient(endpoints.kafka, topic_prefix=isolation[0]) as second:
        assert second.reply_topic != client.reply_topic
        asks = [(caller, random.choice(numbers)) for caller in (client, second) for _ in range(200)]
        # National formats too: the answer must not depend on how the number was written.
        replies = await asyncio.gather(
            *(
                caller.lookup_phone(ACME, n if i % 2 else f"({n[2:5]}) {n[5:8]}-{n[8:]}", timeout=20)
                for i, (caller, n) in enumerate(asks)
            )
        )
    assert [r.result.id if r.result else r.error for r in replies] == [owners[n] for _, n in asks]


async def test_misses_other_customers_and_bad_numbers(
    running_service: Application, client: ContactClient
) -> None:
    await load(client, ACME, 3)
    assert present((await client.lookup_email(ACME, "CALLER1@Example.COM")).result).first_name == "Caller 1"
    cases = [
        (await client.lookup_phone(ACME, "+15559999999"), "CONTACT_NOT_FOUND", "phone"),
        (await client.lookup_phone(GLOBEX, phone(1)), "CONTACT_NOT_FOUND", "phone"),
        (await client.lookup_email(GLOBEX, "caller1@example.com"), "CONTACT_NOT_FOUND", "email"),
        (await client.lookup_phone(ACME, "call me maybe"), "INVALID_ARGUMENT", "phone"),
        (await client.lookup_email(ACME, "not-an-email"), "INVALID_ARGUMENT", "email"),
    ]
    assert [(r.ok, present(r.error).code, present(r.error).field) for r, _, _ in cases] == [
        (False, code, field) for _, code, field in cases
    ]


async def test_batch_lookup_answers_each_number(running_service: Application, client: ContactClient) -> None:
    owners = await load(client, ACME, 5)
    asked = [phone(0), "555 700 0004", "+15559999999", "nope", phone(0)]
    reply = await client.lookup_phones(ACME, asked)
    assert reply.ok
    assert [m.result.id if m.result else present(m.error).code for m in reply.result] == [
        owners[phone(0)],
        owners[phone(4)],
        "CONTACT_NOT_FOUND",
        "INVALID_ARGUMENT",
        owners[phone(0)],
    ]
    too_many = await client.request(
        topics.LOOKUPS,
        {"type": "batch_lookup_contacts", "customer_id": ACME, "phones": [phone(0)] * 101},
        BatchLookupReply,
    )
    assert too_many.error is not None and (too_many.error.code, too_many.error.field) == (
        "INVALID_ARGUMENT",
        "phones",
    )


async def test_a_request_past_its_deadline_is_not_answered_and_is_counted(
    running_service: Application, client: ContactClient
) -> None:
    await load(client, ACME, 1)
    late = json.dumps({"type": "lookup_contact", "customer_id": ACME, "phone": phone(0)}).encode()
    with pytest.raises(RequestTimeout):
        await client.request_raw(topics.LOOKUPS, late, timeout=2, deadline=time.time() - 1)
    assert (await client.lookup_phone(ACME, phone(0))).ok  # later requests are still answered
    topic = running_service.settings.topic(topics.LOOKUPS)
    assert running_service.metrics.sample("contact_requests_expired_total", topic=topic) == 1


async def test_spring_replying_template_headers_are_echoed_byte_for_byte(
    running_service: Application, client: ContactClient, endpoints: Endpoints, isolation: tuple[str, str]
) -> None:
    owners = await load(client, ACME, 2)
    reply_topic = f"{isolation[0]}routing.replies"
    admin = AIOKafkaAdminClient(bootstrap_servers=endpoints.kafka)
    await admin.start()
    await admin.create_topics([NewTopic(reply_topic, 3, 1)])
    await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=endpoints.kafka, group_id=None)
    await consumer.start()
    partitions = [TopicPartition(reply_topic, p) for p in range(3)]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    producer = AIOKafkaProducer(bootstrap_servers=endpoints.kafka)
    await producer.start()
    # What ReplyingKafkaTemplate sends: a 16-byte binary UUID (often not valid UTF-8) and a
    # 4-byte big-endian partition number.
    asks = {
        uuid.UUID(int=0x8E << 120 | i).bytes: body
        for i, body in enumerate(
            [
                {"type": "lookup_contact", "customer_id": ACME, "phone": phone(1)},
                {"type": "lookup_contact", "customer_id": ACME, "phone": "+15559999999"},
                {"type": "no_such_query", "customer_id": ACME},
            ]
        )
    }
    try:
        for correlation, body in asks.items():
            await producer.send_and_wait(
                running_service.settings.topic(topics.LOOKUPS),
                json.dumps(body).encode(),
                headers=[
                    (headers.SPRING_REPLY_TOPIC, reply_topic.encode()),
                    (headers.SPRING_REPLY_PARTITION, (2).to_bytes(4, "big")),
                    (headers.SPRING_CORRELATION_ID, correlation),
                ],
            )
        got: dict[bytes, tuple[int, ContactReply]] = {}
        deadline = time.monotonic() + 20
        while len(got) < len(asks) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    got[dict(r.headers)[headers.SPRING_CORRELATION_ID]] = (
                        r.partition,
                        ContactReply.model_validate_json(r.value),
                    )
    finally:
        await producer.stop()
        await consumer.stop()
    assert set(got) == set(asks)
    assert {partition for partition, _ in got.values()} == {2}
    answers = [got[k][1] for k in asks]
    assert answers[0].result is not None and answers[0].result.id == owners[phone(1)]
    assert answers[1].error is not None and answers[1].error.code == "CONTACT_NOT_FOUND"
    assert answers[2].error is not None and answers[2].error.code == "UNKNOWN_MESSAGE_TYPE"


async def test_client_stop_cancels_pending_calls_and_restarts_cleanly(
    endpoints: Endpoints, isolation: tuple[str, str]
) -> None:
    # Nobody serves this prefix: the call stays pending until the client stops.
    lonely = ContactClient(endpoints.kafka, topic_prefix=isolation[0] + "void.")
    await lonely.start()
    pending = asyncio.create_task(lonely.lookup_phone(ACME, phone(0), timeout=30))
    await asyncio.sleep(0.5)
    await lonely.stop()
    with pytest.raises(asyncio.CancelledError):
        await pending
    with pytest.raises(RequestTimeout):
        async with ContactClient(endpoints.kafka, topic_prefix=isolation[0] + "void.") as again:
            await again.lookup_phone(ACME, phone(0), timeout=0.5)


async def test_bad_lookups_get_an_error_reply_or_a_dead_letter_and_the_rest_are_answered(
    running_service: Application, client: ContactClient
) -> None:
    owners = await load(client, ACME, 1)
    asked = [
        (b"\x00garbage", "MALFORMED_MESSAGE", None),
        (b'{"type": "who_is_it", "customer_id": "x"}', "UNKNOWN_MESSAGE_TYPE", "type"),
        (json.dumps({"type": "lookup_contact", "customer_id": ACME}).encode(), "INVALID_ARGUMENT", None),
        (
            json.dumps({"type": "batch_lookup_contacts", "customer_id": ACME, "phones": []}).encode(),
            "INVALID_ARGUMENT",
            "phones",
        ),
    ]
    replies = await asyncio.gather(*(client.request_raw(topics.LOOKUPS, body) for body, _, _ in asked))
    errors = [ErrorReply.model_validate_json(r).error for r in replies]
    assert [(e.code, e.field) for e in errors if e] == [(code, field) for _, code, field in asked]
    await client.send_raw(topics.LOOKUPS, b"no reply asked", key=ACME)  # nobody to answer: dead letter
    assert present((await client.lookup_phone(ACME, phone(0))).result).id == owners[phone(0)]
    reader = TopicReader(
        running_service.settings.kafka_bootstrap_servers, running_service.settings.topic(topics.DEAD_LETTERS)
    )
    dead = await reader.read(at_least=1)
    assert [(r.value, dict(r.headers)[headers.DLQ_REASON]) for r in dead] == [
        (b"no reply asked", b"MALFORMED_MESSAGE")
    ]
