"""CRM sync over the real broker and store: per-key order, stale updates dropped, replay convergence,
conflicts reported on the sync-results topic, bad messages dead-lettered, and a store failure in the
middle of a batch recovered without loss or double apply."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymongo.errors import AutoReconnect

from contracts import headers, topics
from contracts.client import ContactClient
from contracts.sync import sync_key
from service.bootstrap import Application
from tests.conftest import Endpoints, TopicReader, service_settings
from tests.e2e.test_contact_rules import LoseAckOnce, started_losing_one_ack

pytestmark = pytest.mark.integration

CUST = "cust-sync"


def upsert(external_id: str, version: int, *, phone: str = "", **fields: Any) -> dict[str, Any]:
    contact: dict[str, Any] = {"first_name": fields.pop("first_name", external_id), **fields}
    if phone:
        contact["phone_numbers"] = [{"number": phone, "type": "work"}]
    return {
        "type": "crm_contact_upserted",
        "customer_id": CUST,
        "crm": "salesforce",
        "external_id": external_id,
        "crm_version": version,
        "contact": contact,
    }


def delete(external_id: str, version: int) -> dict[str, Any]:
    return {
        "type": "crm_contact_deleted",
        "customer_id": CUST,
        "crm": "salesforce",
        "external_id": external_id,
        "crm_version": version,
    }


async def publish(client: ContactClient, *messages: dict[str, Any] | bytes) -> None:
    for m in messages:
        value = m if isinstance(m, bytes) else json.dumps(m).encode()
        external_id = "" if isinstance(m, bytes) else m["external_id"]
        await client.send_raw(topics.CRM_SYNC, value, key=sync_key(CUST, external_id).decode())


OUTCOMES = ("applied", "stale", "failed", "dead_lettered")


async def settled(app: Application, *, applied_or_stale: int, timeout: float = 30) -> dict[str, int]:
    """Wait until the service has seen that many sync items (applied + stale + failed)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        c = {o: int(app.metrics.sample("contact_sync_messages_total", outcome=o)) for o in OUTCOMES}
        seen = c["applied"] + c["stale"] + c["failed"]
        if seen >= applied_or_stale or asyncio.get_running_loop().time() > deadline:
            return c
        await asyncio.sleep(0.2)


async def snapshot(app: Application) -> list[dict[str, Any]]:
    db = app.mongo[app.settings.mongodb_database]
    docs = await db["contacts"].find({}).to_list()
    return sorted(({k: v for k, v in d.items() if k != "last_outcome"} for d in docs), key=lambda d: d["_id"])


async def test_newest_state_wins_in_key_order_and_a_replay_changes_nothing(
    running_service: Application, client: ContactClient
) -> None:
    stream = [
        upsert("sf-1", 1, phone="+15552220001", company="v1"),
        upsert("sf-2", 1, phone="+15552220002"),
        upsert("sf-1", 2, phone="+15552220001", company="v2"),
        upsert("sf-1", 1, phone="+15552220001", company="late duplicate of v1"),
        delete("sf-2", 2),
        upsert("sf-2", 1, phone="+15552220002", company="stale resurrection"),
        upsert("sf-3", 7, phone="+15552220003"),
    ]
    await publish(client, *stream)
    counts = await settled(running_service, applied_or_stale=len(stream))
    assert counts["failed"] == 0
    found = await client.lookup_phone(CUST, "+15552220001")
    assert found.result is not None and found.result.company == "v2" and found.result.source == "sync"
    assert found.result.external_id == "sf-1"
    assert not (await client.lookup_phone(CUST, "+15552220002")).ok  # deleted, and stays deleted
    before = await snapshot(running_service)
    events = TopicReader(
        running_service.settings.kafka_bootstrap_servers, running_service.settings.topic(topics.EVENTS)
    )
    events_before = len(await events.read(at_least=1))

    # Replay the whole topic: same state, no new events, every item counted stale.
    await publish(client, *stream)
    counts = await settled(running_service, applied_or_stale=2 * len(stream))
    assert counts["stale"] >= len(stream)
    assert await snapshot(running_service) == before
    assert len(await events.read(at_least=events_before)) == events_before


async def test_conflicts_are_reported_and_bad_messages_dead_lettered_while_the_rest_applies(
    running_service: Application, client: ContactClient
) -> None:
    await publish(client, upsert("owner", 1, phone="+15552220010"))
    await settled(running_service, applied_or_stale=1)
    await publish(
        client,
        upsert("thief", 1, phone="+1 (555) 222-0010"),
        b"{broken",
        {
            "type": "crm_contact_upserted",
            "customer_id": CUST,
            "crm": "zoho",
            "external_id": "no-order",
            "contact": {},
        },
        upsert("fine", 1, phone="+15552220011"),
    )
    await settled(running_service, applied_or_stale=3)
    results = await TopicReader(
        running_service.settings.kafka_bootstrap_servers, running_service.settings.topic(topics.SYNC_RESULTS)
    ).read(at_least=1)
    reported = [json.loads(r.value) for r in results]
    assert [(r["external_id"], r["error"]["code"], r["error"]["field"]) for r in reported] == [
        ("thief", "ADDRESS_ALREADY_EXISTS", "contact.phone_numbers[0].number")
    ]
    assert results[0].key == sync_key(CUST, "thief") and reported[0]["source_offset"] >= 0
    dead = await TopicReader(
        running_service.settings.kafka_bootstrap_servers, running_service.settings.topic(topics.DEAD_LETTERS)
    ).read(at_least=2)
    assert [dict(r.headers)[headers.DLQ_REASON] for r in dead] == [b"MALFORMED_MESSAGE", b"INVALID_ARGUMENT"]
    assert (await client.lookup_phone(CUST, "+15552220011")).ok
    owner = await client.lookup_phone(CUST, "+15552220010")
    assert owner.result is not None and owner.result.external_id == "owner"


@pytest.fixture
async def store_fails_mid_batch(
    endpoints: Endpoints, isolation: tuple[str, str]
) -> AsyncIterator[tuple[Application, LoseAckOnce]]:
    # The contacts of the batch get written, then the store "goes away" before the events and the
    # applied states: the worst place for a batch to stop.
    async with started_losing_one_ack(
        service_settings(endpoints, isolation),
        port="contacts",
        method="insert_many",
        error=AutoReconnect("store went away"),
    ) as flaky:
        yield flaky


async def test_a_store_failure_mid_batch_leaves_nothing_lost_or_applied_twice(
    store_fails_mid_batch: tuple[Application, LoseAckOnce], client: ContactClient
) -> None:
    application, flaky = store_fails_mid_batch
    stream = [upsert(f"bulk-{i}", 1, phone=f"+1555333{i:04d}") for i in range(50)]
    await publish(client, *stream)
    await settled(application, applied_or_stale=len(stream))
    assert flaky.tripped
    for i in (0, 25, 49):
        found = await client.lookup_phone(CUST, f"+1555333{i:04d}")
        assert found.result is not None and found.result.external_id == f"bulk-{i}"
    contacts = await snapshot(application)
    assert len(contacts) == 50 and all(c["version"] == 1 for c in contacts)
    events = TopicReader(
        application.settings.kafka_bootstrap_servers, application.settings.topic(topics.EVENTS)
    )
    created = [json.loads(r.value) for r in await events.read(at_least=50)]
    # Exactly one change per contact; a re-published event keeps its event_id.
    assert len({e["contact_id"] for e in created}) == 50
    assert len({e["event_id"] for e in created}) == 50
