"""``contact-service ops`` end to end: the real CLI (a subprocess, as an operator runs it) against
the real broker and store, with the real service started in-process between its runs."""

import asyncio
import dataclasses
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pymongo.errors import OperationFailure

from contracts import commands as c
from contracts import topics
from contracts.client import ContactClient
from contracts.sync import sync_key
from service.compat import start_consumer
from service.config import Settings
from service.domain.model import Contact
from service.service_layer.context import Services
from service.service_layer.ports import Outcome
from tests.conftest import Endpoints, TopicReader, service_settings, started
from tests.factories import cid, create_contact, ok, send

pytestmark = pytest.mark.integration

CUST = "cust-ops"


async def ops(settings: Settings, *args: str) -> tuple[int, Any, str]:
    """Run ``contact-service ops ARGS --json`` with the service's settings: exit code, JSON, stderr."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "MONGODB_URL": settings.mongodb_url,
        "MONGODB_DATABASE": settings.mongodb_database,
        "TOPIC_PREFIX": settings.topic_prefix,
        "CONSUMER_GROUP": settings.consumer_group,
        "CLAIM_GRACE_SECONDS": str(settings.claim_grace_seconds),
        "COMMAND_LOG_RETENTION_DAYS": str(settings.command_log_retention_days),
        "COLUMNS": "200",
    }
    json_flag = [] if args[0] == "dump" or args[:2] == ("dlq", "show") else ["--json"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service.main", "ops", *args, *json_flag,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    text = stdout.decode()
    document = text if args[0] == "dump" else json.loads(text) if text.strip() else None
    return process.returncode or 0, document, stderr.decode()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = await start_consumer(AIOKafkaConsumer(bootstrap_servers=bootstrap))
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(partitions)).items()}
    finally:
        await consumer.stop()


async def until_caught_up(settings: Settings, *topic_names: str, timeout: float = 60) -> None:
    wanted = {settings.group(name) for name in topic_names}
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        _, report, _ = await ops(settings, "status")
        lags = {g["group"]: g["lag"] for g in report["groups"] if g["group"] in wanted}
        if len(lags) == len(wanted) and not any(lags.values()):
            return
        assert asyncio.get_running_loop().time() < deadline, f"lag did not return to 0: {lags}"
        await asyncio.sleep(1)


def sync_upsert(external_id: str, version: int, phone: str) -> dict[str, Any]:
    return {
        "type": "crm_contact_upserted",
        "customer_id": CUST,
        "crm": "hubspot",
        "external_id": external_id,
        "crm_version": version,
        "contact": {"first_name": external_id, "phone_numbers": [{"number": phone, "type": "work"}]},
    }


async def write_history(client: ContactClient) -> tuple[int, int]:
    """Commands of several kinds and CRM sync messages; how many of each were sent."""
    first = ok(
        await client.command(
            create_contact(CUST, first_name="Ann", phone_numbers=[{"number": "+14155550101"}])
        )
    )
    second = ok(
        await client.command(create_contact(CUST, first_name="Bo", emails=[{"address": "bo@example.com"}]))
    )
    await send(client, c.UpdateContact, customer_id=CUST, contact_id=first.id, changes={"company": "Acme"})
    await send(client, c.AddTag, customer_id=CUST, contact_id=first.id, tag_id="vip")
    await send(client, c.DeleteContact, customer_id=CUST, contact_id=second.id)
    bulk = c.BulkCreateContacts(
        command_id=cid(), customer_id=CUST, contacts=[{"first_name": f"B{i}"} for i in range(5)]
    )
    await client.bulk_create(bulk)
    sync = [
        sync_upsert("crm-1", 1, "+14155550111"),
        sync_upsert("crm-1", 2, "+14155550112"),
        sync_upsert("crm-2", 1, "+14155550113"),
    ]
    for message in sync:
        await client.send_raw(
            topics.CRM_SYNC, json.dumps(message).encode(), key=sync_key(CUST, message["external_id"]).decode()
        )
    return 6, len(sync)


async def test_replaying_both_topics_from_the_start_changes_nothing_and_publishes_nothing(
    endpoints: Endpoints, isolation: tuple[str, str], client: ContactClient
) -> None:
    settings = service_settings(endpoints, isolation)
    async with started(settings, drop_database=False):
        sent_commands, sent_sync = await write_history(client)
        await until_caught_up(settings, topics.COMMANDS, topics.CRM_SYNC)
        code, refused, _ = await ops(settings, "replay", "--topic", "commands", "--earliest")
        assert code == 2 and refused["replays"][0]["refused"]  # live members: nothing moved
    _, before, _ = await ops(settings, "dump")
    events_before = await end_offsets(endpoints.kafka, settings.topic(topics.EVENTS))

    code, plan, error = await ops(
        settings, "replay", "--topic", "commands", "--topic", "crm-sync", "--earliest"
    )
    assert code == 0, error
    again = {p["topic"]: p["messages_again"] for p in plan["replays"]}
    assert again == {
        settings.topic(topics.COMMANDS): sent_commands,
        settings.topic(topics.CRM_SYNC): sent_sync,
    }

    async with started(settings):
        await until_caught_up(settings, topics.COMMANDS, topics.CRM_SYNC)
        _, after, _ = await ops(settings, "dump")
        assert after == before and after.count("\n") > 20
        assert await end_offsets(endpoints.kafka, settings.topic(topics.EVENTS)) == events_before


class RefusingStore:
    """Contacts whose writes fail (not as an outage: the store refuses them) until told otherwise."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.refusing = inner, True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def insert(self, *, contact: Contact, outcome: Outcome) -> bool:
        if self.refusing:
            raise OperationFailure("not writable now", code=10107)
        return bool(await self.inner.insert(contact=contact, outcome=outcome))


async def test_a_command_dead_lettered_while_the_store_refused_it_is_redriven_and_applied_once(
    endpoints: Endpoints, isolation: tuple[str, str], client: ContactClient
) -> None:
    settings = service_settings(endpoints, isolation).model_copy(update={"max_delivery_attempts": 2})
    store: list[RefusingStore] = []

    def adapt(services: Services) -> Services:
        store.append(RefusingStore(services.contacts))
        return dataclasses.replace(services, contacts=store[0])

    spring_id = bytes(range(250, 256)) + bytes(10)  # not UTF-8: must come back byte for byte
    create = create_contact(CUST, first_name="Redriven", phone_numbers=[{"number": "+14155550199"}])
    async with started(settings, adapt=adapt):
        producer = AIOKafkaProducer(bootstrap_servers=endpoints.kafka)
        await producer.start()
        try:
            await producer.send_and_wait(
                settings.topic(topics.COMMANDS),
                create.model_dump_json().encode(),
                key=CUST.encode(),
                headers=[("kafka_correlationId", spring_id)],
            )
        finally:
            await producer.stop()
        letters = await _dead_letters(settings, count=1)
        assert letters[0]["reason"] == "PROCESSING_FAILED" and letters[0]["attempts"] == 2
        assert letters[0]["group"] == settings.group(topics.COMMANDS)
        _, shown, _ = await ops(settings, "dlq", "show", letters[0]["id"])
        assert json.loads(shown["value"]) == json.loads(create.model_dump_json())
        assert shown["headers"]["kafka_correlationId"] == spring_id.decode("utf-8", "backslashreplace")

        store[0].refusing = False
        code, dry, _ = await ops(settings, "dlq", "redrive", "--dry-run")
        assert (code, dry["sent"], dry["dry_run"]) == (0, 1, True), dry
        _, first, _ = await ops(settings, "dlq", "redrive", "--reason", "PROCESSING_FAILED")
        _, second, _ = await ops(settings, "dlq", "redrive")
        assert (first["sent"], second["sent"], second["already"]) == (1, 0, 1)

        events = TopicReader(endpoints.kafka, settings.topic(topics.EVENTS))
        [created] = await events.read(at_least=1, settle=2.0)
        assert json.loads(created.value)["type"] == "contact.created"
        redriven = await TopicReader(endpoints.kafka, settings.topic(topics.COMMANDS)).read(at_least=2)
        assert dict(redriven[-1].headers)["kafka_correlationId"] == spring_id
        assert redriven[-1].value == redriven[0].value and redriven[-1].key == redriven[0].key


async def _dead_letters(settings: Settings, *, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        _, letters, _ = await ops(settings, "dlq", "list")
        if len(letters) >= count:
            return list(letters)
        assert asyncio.get_running_loop().time() < deadline, "nothing was dead-lettered"
        await asyncio.sleep(1)


async def test_check_finds_and_repairs_a_planted_orphan_claim_and_reemit_publishes_current_states(
    endpoints: Endpoints, isolation: tuple[str, str], client: ContactClient
) -> None:
    settings = service_settings(endpoints, isolation)
    async with started(settings) as application:
        kept = ok(
            await client.command(
                create_contact(CUST, first_name="Kept", phone_numbers=[{"number": "+14155550121"}])
            )
        )
        gone = ok(
            await client.command(
                create_contact(CUST, first_name="Gone", emails=[{"address": "gone@example.com"}])
            )
        )
        await send(client, c.DeleteContact, customer_id=CUST, contact_id=gone.id)
        await until_caught_up(settings, topics.COMMANDS)
        code, clean, _ = await ops(settings, "check")
        assert (code, clean["findings"], clean["contacts"]) == (0, [], 2), clean

        old = datetime.now(UTC) - timedelta(hours=1)
        await application.mongo[settings.mongodb_database]["contact_addresses"].insert_one(
            {
                "_id": "planted",
                "customer_id": CUST,
                "kind": "phone",
                "value": "+14155550122",
                "contact_id": "ghost",
                "claimed_at": old,
            }
        )
        code, found, _ = await ops(settings, "check")
        assert code == 1 and [f["kind"] for f in found["findings"]] == ["orphan_claim"]
        code, fixed, _ = await ops(settings, "check", "--repair")
        assert code == 0 and len(fixed["repaired"]) == 1
        assert (await ops(settings, "check"))[0] == 0

        reader = TopicReader(endpoints.kafka, settings.topic(topics.EVENTS))
        before = len(await reader.read(at_least=3))
        _, emitted, _ = await ops(settings, "reemit")
        _, again, _ = await ops(settings, "reemit", "--customer", CUST)
        assert (emitted["contacts"], emitted["published"], emitted["deleted"], again["published"]) == (
            2,
            2,
            1,
            2,
        )
        everything = [json.loads(r.value) for r in await reader.read(at_least=before + 4)]
        reemitted = [e for e in everything if e["cause"]["command_type"] == "reemit"]
        assert len(reemitted) == 4
        by_contact = {e["contact_id"]: e for e in reemitted}
        assert (
            by_contact[kept.id]["type"] == "contact.updated"
            and by_contact[gone.id]["type"] == "contact.deleted"
        )
        assert {e["version"] for e in reemitted if e["contact_id"] == kept.id} == {1}
        assert len({e["event_id"] for e in reemitted}) == 2  # a second re-emit repeats the same event ids
        assert (await ops(settings, "check"))[0] == 0

        _, status, _ = await ops(settings, "status")
        assert status["command_log"]["entries"] >= 3 and status["dead_letters"] == {}
        assert {g["group"]: g["members"] for g in status["groups"]}[settings.group(topics.COMMANDS)] == 1

        short = settings.model_copy(update={"command_log_retention_days": 1 / 86400})  # one second
        await asyncio.sleep(1.5)
        _, dry, _ = await ops(short, "prune-log", "--dry-run")
        _, pruned, _ = await ops(short, "prune-log")
        _, again, _ = await ops(short, "prune-log")
        assert dry["older"] == pruned["pruned"] == status["command_log"]["entries"] and dry["pruned"] == 0
        assert again["pruned"] == 0
