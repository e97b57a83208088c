"""Re-emit: every contact's current state published on the events topic.

Why the events topic rather than a state topic of its own: every consumer of contacts.events.v1
already applies events by version, so a re-emitted state is one more event it knows how to take
(a new consumer builds its view from it; a damaged one is repaired by it), with no new topic or
contract to adopt. Each re-emitted event is a ``contact.updated`` (``contact.deleted`` for a
deleted contact) with no changed fields, the stored version, and an event_id fixed per
(contact, version): a second re-emit is deduped by consumers, and an unchanged contact's version
tells a consumer that already holds it that nothing is new.
"""

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.progress import Progress

from contracts import topics
from service.adapters.mongo import CONTACTS, every_contact, make_client
from service.config import Settings
from service.service_layer import mapping
from service.service_layer.commands import change_event
from service.service_layer.items import ItemOrigin

REEMIT = ItemOrigin("reemit", "reemit")
"""The cause re-emitted events name."""


def reemitted(contact: Any) -> dict[str, Any]:
    event = change_event(REEMIT, contact, [])
    event["event_id"] = mapping.derived_id("reemit", contact.customer_id, contact.id, str(contact.version))
    return event


async def run(
    settings: Settings, *, customer_id: str | None, dry_run: bool, progress: Callable[[], Progress]
) -> dict[str, Any]:
    topic = settings.topic(topics.EVENTS)
    counts: dict[str, Any] = {"contacts": 0, "published": 0, "deleted": 0, "topic": topic}
    mongo = make_client(settings.mongodb_url)
    producer = AIOKafkaProducer(**settings.kafka_options(), acks="all", enable_idempotence=True, linger_ms=5)
    try:
        db = mongo[settings.mongodb_database]
        query = {} if customer_id is None else {"customer_id": customer_id}
        total = await db[CONTACTS].count_documents(query)
        err = Console(stderr=True)
        err.print(f"{'would re-emit' if dry_run else 're-emitting'} {total} contacts to {topic}")
        await producer.start()
        with progress() as bar:
            task = bar.add_task("re-emitting" if not dry_run else "counting", total=total)
            pending: list[asyncio.Future[Any]] = []
            async for contact in every_contact(db, customer_id=customer_id):
                counts["contacts"] += 1
                counts["deleted"] += contact.is_deleted
                if not dry_run:
                    pending.append(await _send(producer, topic, reemitted(contact)))
                if len(pending) >= 500:
                    await asyncio.gather(*pending)
                    counts["published"] += len(pending)
                    pending.clear()
                bar.advance(task)
            await asyncio.gather(*pending)
            counts["published"] += len(pending)
    finally:
        await producer.stop()
        await mongo.close()
    return counts


async def _send(producer: AIOKafkaProducer, topic: str, event: dict[str, Any]) -> "asyncio.Future[Any]":
    headers = [
        ("content-type", b"application/json"),
        ("event_type", event["type"].encode()),
        ("event_id", event["event_id"].encode()),
    ]
    sent: asyncio.Future[Any] = await producer.send(
        topic, json.dumps(event).encode(), key=event["contact_id"].encode(), headers=headers
    )
    return sent
