"""The caller directory on the real broker and store: lookups answered from memory never return a
contact as it was before an answered change, under concurrent updates and moves; a restarted
service loads what the store holds; with the directory off, the store answers the same."""

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from contracts import commands as c
from contracts.client import ContactClient
from contracts.models import Contact
from service.adapters import directory_feed
from service.adapters.directory_feed import KafkaDirectoryFeed
from service.bootstrap import Application, build
from tests.conftest import Endpoints, service_settings, started
from tests.factories import CommandT, ok, present, send

CUST = "cust-directory"


def feed_of(service: Application) -> KafkaDirectoryFeed:
    feed = service.services.directory
    assert isinstance(feed, KafkaDirectoryFeed)
    return feed


async def until_ready(service: Application) -> KafkaDirectoryFeed:
    feed = feed_of(service)
    for _ in range(200):
        if feed.ready:
            return feed
        await asyncio.sleep(0.05)
    raise AssertionError("the caller directory never loaded")


async def command(client: ContactClient, kind: type[CommandT], **fields: Any) -> Contact:
    return ok(await send(client, kind, customer_id=CUST, **fields))


async def create_numbered(client: ContactClient, count: int, *, block: str) -> list[str]:
    """``count`` contacts n0, n1, ..., each with its own number in ``block`` (+1555 block 0000 on)."""
    return [
        (
            await command(
                client,
                c.CreateContact,
                contact={"first_name": f"n{i}", "phone_numbers": [{"number": f"+1555{block}{i:04d}"}]},
            )
        ).id
        for i in range(count)
    ]


def _late_consumer(*topics: str, **config: Any) -> AIOKafkaConsumer:
    """The directory's reader, slowed: every batch of events is applied 30 ms after it arrived."""
    consumer = AIOKafkaConsumer(*topics, **config)
    getmany = consumer.getmany

    async def late_getmany(*partitions: Any, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        batch = await getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)
        if batch:
            await asyncio.sleep(0.03)
        return batch

    consumer.getmany = late_getmany
    return consumer


@pytest.fixture(params=["prompt", "late"])
def directory_pace(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "late":
        # Without the barrier a lookup sent right after an answered update would find the
        # directory still without it; with it the lookup waits (LOOKUP_DIRECTORY_WAIT_MS is 50).
        monkeypatch.setattr(directory_feed, "AIOKafkaConsumer", _late_consumer)
    return str(request.param)


async def test_no_lookup_returns_a_contact_older_than_an_update_already_answered(
    directory_pace: str, running_service: Application, client: ContactClient
) -> None:
    feed = await until_ready(running_service)
    number = "+15557010000"
    contact = await command(
        client, c.CreateContact, contact={"first_name": "v0", "phone_numbers": [{"number": number}]}
    )
    answered = 0  # the newest version whose update has been answered
    done = asyncio.Event()
    seen: list[tuple[int, int]] = []

    async def writer() -> None:
        nonlocal answered
        for v in range(1, 41):
            await command(client, c.UpdateContact, contact_id=contact.id, changes={"first_name": f"v{v}"})
            answered = v
            # Read your write: asked right after the answer, the lookup has it.
            own = await client.lookup_phone(CUST, number)
            assert own.result is not None and own.result.first_name == f"v{v}"
        done.set()

    async def reader() -> None:
        while not done.is_set():
            floor = answered
            reply = await client.lookup_phone(CUST, number)
            assert reply.result is not None
            seen.append((floor, int(reply.result.first_name[1:])))

    trusted = feed.stats["directory_trusted"]
    await asyncio.gather(writer(), *(reader() for _ in range(4)))
    stale = [(floor, got) for floor, got in seen if got < floor]
    assert not stale, f"lookups older than an answered update: {stale[:5]}"
    assert len(seen) > 40 and len({got for _, got in seen}) > 5  # the readers saw the updates go by
    assert feed.stats["directory_trusted"] - trusted >= len(seen)  # ... from the directory


async def test_a_number_moved_between_contacts_is_found_with_its_new_owner_once_answered(
    running_service: Application, client: ContactClient
) -> None:
    await until_ready(running_service)
    number = "+15557020000"
    first = await command(
        client, c.CreateContact, contact={"first_name": "A", "phone_numbers": [{"number": number}]}
    )
    second = await command(client, c.CreateContact, contact={"first_name": "B"})
    for owner, other in ((first, second), (second, first), (first, second)):
        held = await client.lookup_phone(CUST, number)
        assert held.result is not None and held.result.id == owner.id
        phone_id = held.result.phone_numbers[0].id
        await command(client, c.RemovePhoneNumber, contact_id=owner.id, phone_number_id=phone_id)
        gone = await client.lookup_phone(CUST, number)
        assert gone.error is not None and gone.error.code == "CONTACT_NOT_FOUND"
        await command(client, c.AddPhoneNumber, contact_id=other.id, phone_number={"number": number})
        moved = await client.lookup_phone(CUST, number)
        assert moved.result is not None and moved.result.id == other.id
    await command(client, c.DeleteContact, contact_id=second.id)  # its owner after the last move
    deleted = await client.lookup_phone(CUST, number)
    assert deleted.error is not None and deleted.error.code == "CONTACT_NOT_FOUND"


async def test_a_restarted_service_loads_the_contacts_already_stored(
    endpoints: Endpoints, isolation: tuple[str, str], client: ContactClient
) -> None:
    settings = service_settings(endpoints, isolation)
    first = build(settings)
    await first.app.start()
    try:
        await until_ready(first)
        ids = await create_numbered(client, 5, block="703")
        await command(client, c.DeleteContact, contact_id=ids[4])
    finally:
        await first.app.stop()
    async with started(settings) as second:
        feed = await until_ready(second)
        assert feed.directory.active == 4
        trusted = feed.stats["directory_trusted"]
        found = [await client.lookup_phone(CUST, f"+1555703{i:04d}") for i in range(5)]
        assert [r.result.id if r.result else present(r.error).code for r in found] == [
            *ids[:4],
            "CONTACT_NOT_FOUND",
        ]
        assert feed.stats["directory_trusted"] - trusted == 5


async def test_with_the_directory_off_the_store_answers_the_same(
    endpoints: Endpoints, isolation: tuple[str, str], client: ContactClient
) -> None:
    settings = service_settings(endpoints, isolation).model_copy(update={"lookup_directory": False})
    async with started(settings) as service:
        assert service.services.directory is None
        contact = await command(
            client,
            c.CreateContact,
            contact={"first_name": "S", "phone_numbers": [{"number": "+15557040000"}]},
        )
        found = await client.lookup_phone(CUST, "+15557040000")
        assert found.result == contact


async def test_past_its_size_limit_the_directory_turns_off_and_the_store_answers(
    endpoints: Endpoints, isolation: tuple[str, str], client: ContactClient
) -> None:
    settings = service_settings(endpoints, isolation).model_copy(update={"lookup_directory_max_contacts": 2})
    async with started(settings) as service:
        feed = await until_ready(service)
        ids = await create_numbered(client, 3, block="705")
        for _ in range(100):
            if not feed.ready:
                break
            await asyncio.sleep(0.05)
        assert not feed.ready and len(feed.directory) == 0
        found = [await client.lookup_phone(CUST, f"+1555705{i:04d}") for i in range(3)]
        assert [r.result.id if r.result else None for r in found] == ids
