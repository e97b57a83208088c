"""The Contact API's rules over the real broker and store: events, idempotency, conflicts, primaries,
soft delete, tenant isolation, pagination, bad input and the dead-letter topic, redelivery after a
failure between the store write and the event publish."""

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from pymongo.errors import AutoReconnect

from contracts import commands as c
from contracts import headers, topics
from contracts.client import ContactClient
from contracts.models import Contact
from contracts.replies import ContactReply, ErrorReply
from service.bootstrap import Application
from service.config import Settings
from service.service_layer.context import Services
from service.service_layer.ports import JsonDict
from tests.conftest import Endpoints, TopicReader, service_settings, started
from tests.factories import cid, command, create_contact, ok, present

pytestmark = pytest.mark.integration

ACME = "cust-acme"
GLOBEX = "cust-globex"


def create(
    customer: str, *, phones: Sequence[str] = (), emails: Sequence[str] = (), **fields: Any
) -> c.CreateContact:
    return create_contact(
        customer,
        first_name=fields.pop("first_name", "Ada"),
        phone_numbers=[{"number": p, "type": "mobile"} for p in phones],
        emails=[{"address": e, "type": "work"} for e in emails],
        **fields,
    )


def bulk_of(contacts: list[JsonDict]) -> c.BulkCreateContacts:
    """A bulk create of ``contacts`` (contact inputs as dicts) for ACME."""
    return command(c.BulkCreateContacts, customer_id=ACME, contacts=contacts)


def events_of(records: list[Any], contact_id: str) -> list[JsonDict]:
    return [json.loads(r.value) for r in records if r.key == contact_id.encode()]


async def test_events_carry_the_whole_contact_changes_version_and_cause(
    running_service: Application, client: ContactClient
) -> None:
    first = create(ACME, phones=["+15551230001"], last_name="Lovelace")
    contact = ok(await client.command(first))
    rename = command(
        c.UpdateContact, customer_id=ACME, contact_id=contact.id, changes={"company": "Analytical Engines"}
    )
    renamed = ok(await client.command(rename))
    # Partial update: only the given field changed.
    assert (renamed.first_name, renamed.last_name, renamed.company) == (
        "Ada",
        "Lovelace",
        "Analytical Engines",
    )
    delete = c.DeleteContact(command_id=cid(), customer_id=ACME, contact_id=contact.id)
    ok(await client.command(delete))

    reader = TopicReader(
        running_service.settings.kafka_bootstrap_servers, running_service.settings.topic(topics.EVENTS)
    )
    events = events_of(await reader.read(at_least=3), contact.id)
    assert [e["type"] for e in events] == ["contact.created", "contact.updated", "contact.deleted"]
    assert [e["version"] for e in events] == [1, 2, 3]
    assert [e["cause"]["command_id"] for e in events] == [
        first.command_id,
        rename.command_id,
        delete.command_id,
    ]
    assert [e["cause"]["command_type"] for e in events] == [
        "create_contact",
        "update_contact",
        "delete_contact",
    ]
    assert events[1]["changed_fields"] == ["company"]
    assert (
        events[1]["contact"]["company"] == "Analytical Engines" and events[1]["contact"]["id"] == contact.id
    )
    assert events[2]["contact"]["tm_delete"] is not None
    assert len({e["event_id"] for e in events}) == 3
    headers_of_first = dict(reader.records[0].headers)
    assert headers_of_first["event_type"] == b"contact.created"


async def test_redelivered_command_gives_the_same_reply_and_changes_nothing_twice(
    running_service: Application, client: ContactClient
) -> None:
    creation = create(ACME, phones=["+15551230002"])
    raw = creation.model_dump_json().encode()
    first = ContactReply.model_validate_json(await client.request_raw(topics.COMMANDS, raw, key=ACME))
    again = ContactReply.model_validate_json(await client.request_raw(topics.COMMANDS, raw, key=ACME))
    assert first.ok and again == first

    first_id = present(first.result).id
    add = command(
        c.AddEmail,
        customer_id=ACME,
        contact_id=first_id,
        email={"address": "ada@example.com", "type": "work"},
    )
    once = await client.command(add)
    twice = await client.command(add)
    assert once == twice and len(present(twice.result).emails) == 1

    listed = await client.list_contacts(ACME)
    assert [x.id for x in listed.result] == [first_id]
    reader = TopicReader(
        running_service.settings.kafka_bootstrap_servers, running_service.settings.topic(topics.EVENTS)
    )
    events = events_of(await reader.read(at_least=2), first_id)
    assert [e["type"] for e in events] == ["contact.created", "contact.updated"]


async def test_command_without_reply_to_is_applied_and_announced(
    running_service: Application, client: ContactClient
) -> None:
    await client.send(topics.COMMANDS, create(ACME, phones=["+15551230003"]), key=ACME)
    for _ in range(100):
        found = await client.lookup_phone(ACME, "+15551230003")
        if found.ok:
            break
        await asyncio.sleep(0.1)
    contact = ok(found)
    reader = TopicReader(
        running_service.settings.kafka_bootstrap_servers, running_service.settings.topic(topics.EVENTS)
    )
    assert [e["type"] for e in events_of(await reader.read(at_least=1), contact.id)] == ["contact.created"]


async def test_an_address_belongs_to_one_contact_per_customer(
    running_service: Application, client: ContactClient
) -> None:
    owner = ok(await client.command(create(ACME, phones=["+1 555 123 0004"], emails=["Owner@Example.com"])))

    # Same number in another format, same email in another case: refused, nothing created.
    for clash, field in [
        (create(ACME, phones=["(555) 123-0004"]), "contact.phone_numbers[0].number"),
        (create(ACME, emails=["OWNER@example.COM"]), "contact.emails[0].address"),
    ]:
        refused = await client.command(clash)
        assert not refused.ok and refused.error is not None
        assert refused.error.code == "ADDRESS_ALREADY_EXISTS" and (refused.error.field or "").startswith(
            field
        )
    other = ok(await client.command(create(ACME, first_name="Bob", phones=["+15551230005"])))
    steal = command(
        c.AddPhoneNumber,
        customer_id=ACME,
        contact_id=other.id,
        phone_number={"number": "555-123-0004", "type": "work", "region": "US"},
    )
    refused = await client.command(steal)
    assert refused.error is not None and refused.error.code == "ADDRESS_ALREADY_EXISTS"
    assert ok(await client.get(ACME, other.id)).phone_numbers == other.phone_numbers
    assert ok(await client.lookup_phone(ACME, "+15551230004")).id == owner.id
    assert len((await client.list_contacts(ACME)).result) == 2

    # Soft delete releases the number; deleting twice is harmless.
    delete = c.DeleteContact(command_id=cid(), customer_id=ACME, contact_id=owner.id)
    ok(await client.command(delete))
    again = await client.command(c.DeleteContact(command_id=cid(), customer_id=ACME, contact_id=owner.id))
    assert again.ok or (again.error is not None and again.error.code == "CONTACT_NOT_FOUND")
    taken = ok(await client.command(steal.model_copy(update={"command_id": cid()})))
    assert ok(await client.lookup_phone(ACME, "+15551230004")).id == taken.id == other.id


async def test_one_primary_phone_and_one_primary_email(
    running_service: Application, client: ContactClient
) -> None:
    contact = ok(
        await client.command(
            create_contact(
                ACME,
                first_name="Pat",
                phone_numbers=[{"number": "+15551230010", "type": "mobile", "is_primary": True}],
                emails=[{"address": "pat@example.com", "type": "work", "is_primary": True}],
            )
        )
    )

    async def add(**entry: Any) -> Contact:
        """Add the phone number (``phone_number=``) or the email (``email=``) to the contact."""
        kind: type[c.AddPhoneNumber | c.AddEmail] = (
            c.AddPhoneNumber if "phone_number" in entry else c.AddEmail
        )
        return ok(await client.command(command(kind, customer_id=ACME, contact_id=contact.id, **entry)))

    after = await add(phone_number={"number": "+15551230011", "type": "work", "is_primary": True})
    assert [(p.number_e164, p.is_primary) for p in after.phone_numbers] == [
        ("+15551230010", False),
        ("+15551230011", True),
    ]
    after = await add(email={"address": "Pat.Home@Example.com", "type": "personal", "is_primary": True})
    assert [(str(e.address), e.is_primary) for e in after.emails] == [
        ("pat@example.com", False),
        ("pat.home@example.com", True),
    ]
    two_primaries = create(ACME, first_name="Q")
    two_primaries = two_primaries.model_copy(
        update={
            "contact": two_primaries.contact.model_copy(
                update={
                    "phone_numbers": [
                        p.model_copy(update={"is_primary": True})
                        for p in create(ACME, phones=["+15551230012", "+15551230013"]).contact.phone_numbers
                    ]
                }
            )
        }
    )
    refused = await client.command(two_primaries)
    assert refused.error is not None and refused.error.code == "INVALID_ARGUMENT"


async def test_customers_never_see_or_change_each_other(
    running_service: Application, client: ContactClient
) -> None:
    mine = ok(await client.command(create(ACME, phones=["+15551230020"], emails=["same@example.com"])))
    # The same number and email are free in another customer.
    theirs = ok(await client.command(create(GLOBEX, phones=["+15551230020"], emails=["same@example.com"])))
    assert ok(await client.lookup_phone(ACME, "+15551230020")).id == mine.id
    assert ok(await client.lookup_phone(GLOBEX, "+15551230020")).id == theirs.id
    assert ok(await client.lookup_email(GLOBEX, "same@example.com")).customer_id == GLOBEX

    not_mine = await client.get(GLOBEX, mine.id)
    assert not_mine.error is not None and not_mine.error.code == "CONTACT_NOT_FOUND"
    hostile_commands: list[c.ContactCommand] = [
        command(c.UpdateContact, customer_id=GLOBEX, contact_id=mine.id, changes={"company": "X"}),
        c.DeleteContact(command_id=cid(), customer_id=GLOBEX, contact_id=mine.id),
        c.AddTag(command_id=cid(), customer_id=GLOBEX, contact_id=mine.id, tag_id="t"),
    ]
    for hostile in hostile_commands:
        reply = await client.command(hostile)
        assert reply.error is not None and reply.error.code == "CONTACT_NOT_FOUND", hostile.type
    assert ok(await client.get(ACME, mine.id)) == mine
    assert [x.id for x in (await client.list_contacts(GLOBEX)).result] == [theirs.id]


async def test_list_pages_newest_first_without_skips_or_repeats(
    running_service: Application, client: ContactClient
) -> None:
    bulk = bulk_of([{"first_name": f"P{i:02}", "external_id": f"ext-{i}"} for i in range(25)])
    created = await client.bulk_create(bulk)
    assert created.ok and created.created == 25
    # One bulk write: many contacts share a tm_create, which the page token must still tell apart.
    seen: list[str] = []
    token, pages = "", 0
    while True:
        page = await client.list_contacts(ACME, page_size=10, page_token=token)
        assert page.ok, page.error
        seen += [x.id for x in page.result]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 25
    everything = (await client.list_contacts(ACME, page_size=100)).result
    assert [x.id for x in everything] == seen
    assert [x.tm_create for x in everything] == sorted((x.tm_create for x in everything), reverse=True)
    too_big = await client.request(
        topics.QUERIES, {"type": "list_contacts", "customer_id": ACME, "page_size": 101}, ErrorReply
    )
    assert too_big.error is not None and (too_big.error.code, too_big.error.field) == (
        "INVALID_ARGUMENT",
        "page_size",
    )
    forged = await client.list_contacts(ACME, page_token="not-a-token")
    assert forged.error is not None and forged.error.field == "page_token"


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (b"{not json", "MALFORMED_MESSAGE", None),
        (
            b'{"type": "rename_contact", "command_id": "1", "customer_id": "c"}',
            "UNKNOWN_MESSAGE_TYPE",
            "type",
        ),
        (
            b'{"type": "create_contact", "command_id": "1", "customer_id": "c", "contact": {"id": "mine"}}',
            "INVALID_ARGUMENT",
            "contact.id",
        ),
        (
            b'{"type": "create_contact", "command_id": "1", "customer_id": "c",'
            b' "contact": {"phone_numbers": [{"number": "not a phone"}]}}',
            "INVALID_ARGUMENT",
            "contact.phone_numbers[0].number",
        ),
        (
            b'{"type": "create_contact", "command_id": "1", "customer_id": "c",'
            b' "contact": {"emails": [{"address": "x@"}]}}',
            "INVALID_ARGUMENT",
            "contact.emails[0].address",
        ),
    ],
)
async def test_bad_input_gets_a_clear_error_reply(
    running_service: Application, client: ContactClient, body: bytes, code: str, field: str | None
) -> None:
    reply = ErrorReply.model_validate_json(await client.request_raw(topics.COMMANDS, body))
    assert not reply.ok and reply.error is not None
    assert (reply.error.code, reply.error.field) == (code, field), reply.error.message


async def test_poison_message_goes_to_the_dead_letter_topic_and_the_consumer_goes_on(
    running_service: Application, client: ContactClient
) -> None:
    await client.send_raw(topics.COMMANDS, b"\x00garbage", key=ACME)
    await client.send_raw(topics.COMMANDS, b'{"type": "create_contact", "command_id": "x"}', key=ACME)
    after = ok(await client.command(create(ACME, phones=["+15551230030"])))
    assert after.phone_numbers[0].number_e164 == "+15551230030"

    reader = TopicReader(
        running_service.settings.kafka_bootstrap_servers, running_service.settings.topic(topics.DEAD_LETTERS)
    )
    dead = await reader.read(at_least=2)
    assert [r.value for r in dead] == [b"\x00garbage", b'{"type": "create_contact", "command_id": "x"}']
    first, second = (dict(r.headers) for r in dead)
    assert first[headers.DLQ_REASON] == b"MALFORMED_MESSAGE"
    assert first[headers.DLQ_SOURCE_TOPIC] == running_service.settings.topic(topics.COMMANDS).encode()
    assert int(first[headers.DLQ_SOURCE_OFFSET]) >= 0
    assert second[headers.DLQ_REASON] == b"INVALID_ARGUMENT" and second[headers.DLQ_FIELD] == b"customer_id"


@dataclasses.dataclass
class LoseAckOnce:
    """A store or broker that applies the first write but loses its acknowledgement: the
    situation a crash between the store write and the event publish leaves behind."""

    inner: Any
    method: str
    error: Exception
    tripped: bool = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name != self.method:
            return attr

        async def once(*args: Any, **kwargs: Any) -> Any:
            result = await attr(*args, **kwargs)
            if not self.tripped:
                self.tripped = True
                raise self.error
            return result

        return once


@asynccontextmanager
async def started_losing_one_ack(
    settings: Settings, *, port: str, method: str, error: Exception
) -> AsyncIterator[tuple[Application, LoseAckOnce]]:
    """The real service, with ``port.method`` (a field of Services) losing its first ack."""
    holder: list[LoseAckOnce] = []

    def adapt(services: Services) -> Services:
        holder.append(LoseAckOnce(getattr(services, port), method, error))
        swapped: dict[str, Any] = {port: holder[0]}
        return dataclasses.replace(services, **swapped)

    async with started(settings, adapt=adapt) as application:
        yield application, holder[0]


@pytest.fixture(params=["store write", "event publish"])
async def flaky_service(
    request: pytest.FixtureRequest, endpoints: Endpoints, isolation: tuple[str, str]
) -> AsyncIterator[tuple[Application, LoseAckOnce]]:
    if request.param == "store write":
        port, method, error = "contacts", "insert", AutoReconnect("connection reset")
    else:
        port, method, error = "events", "publish", KafkaConnectionError("broker gone")
    settings = service_settings(endpoints, isolation)
    async with started_losing_one_ack(settings, port=port, method=method, error=error) as flaky:
        yield flaky


async def test_a_failure_after_the_write_means_redelivery_never_loss_or_double_apply(
    flaky_service: tuple[Application, LoseAckOnce], client: ContactClient
) -> None:
    application, flaky = flaky_service
    contact = ok(await client.command(create(ACME, phones=["+15551230040"]), timeout=30))
    assert flaky.tripped
    assert [x.id for x in (await client.list_contacts(ACME)).result] == [contact.id]
    reader = TopicReader(
        application.settings.kafka_bootstrap_servers, application.settings.topic(topics.EVENTS)
    )
    events = events_of(await reader.read(at_least=1), contact.id)
    # The lost publish ack is the one case where the event reaches the topic twice: same event_id,
    # so consumers dedupe. Never a second, different change.
    assert {e["event_id"] for e in events} == {events[0]["event_id"]}
    assert {e["type"] for e in events} == {"contact.created"}


async def test_bulk_create_reports_each_item_and_applies_the_rest(
    running_service: Application, client: ContactClient
) -> None:
    taken = ok(await client.command(create(ACME, phones=["+15551230050"])))
    bulk = bulk_of(
        [
            {"first_name": "Fine", "external_id": "crm-1", "phone_numbers": [{"number": "+15551230051"}]},
            {"first_name": "Bad phone", "phone_numbers": [{"number": "not a number"}]},
            {"first_name": "Taken", "phone_numbers": [{"number": "(555) 123-0050"}]},
            {"first_name": "Unknown field", "id": "forged"},
            {"first_name": "Twin", "phone_numbers": [{"number": "+15551230051"}]},
            {"first_name": "Fine again", "external_id": "crm-1", "company": "Same CRM record"},
        ]
    )
    reply = await client.bulk_create(bulk)
    assert reply.ok
    assert [(i.index, i.status) for i in reply.items] == [
        (0, "created"),
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
        (4, "failed"),
        (5, "updated"),  # same external_id: an upsert of item 0's contact
    ]
    assert [(e.index, present(e.error).code, present(e.error).field) for e in reply.errors] == [
        (1, "INVALID_ARGUMENT", "contacts[1].phone_numbers[0].number"),
        (2, "ADDRESS_ALREADY_EXISTS", "contacts[2].phone_numbers[0].number"),
        (3, "INVALID_ARGUMENT", "contacts[3].id"),
        (4, "ADDRESS_ALREADY_EXISTS", "contacts[4].phone_numbers[0].number"),
    ]
    assert (reply.created, reply.updated, reply.failed) == (1, 1, 4)
    assert reply.items[5].contact_id == reply.items[0].contact_id
    upserted = [x for x in reply.contacts if x.id == reply.items[5].contact_id][-1]  # item 5's view
    assert upserted.company == "Same CRM record"
    # Replaying the bulk command answers the same and creates nothing more.
    assert await client.bulk_create(bulk) == reply
    assert len((await client.list_contacts(ACME)).result) == 2

    gone = c.BulkDeleteContacts(
        command_id=cid(), customer_id=ACME, contact_ids=[taken.id, upserted.id, "no-such-contact"]
    )
    deleted = await client.bulk_delete(gone)
    assert (deleted.deleted, deleted.not_found) == (2, ["no-such-contact"])
    assert (await client.list_contacts(ACME)).result == []
    assert await client.bulk_delete(gone) == deleted


async def test_a_full_bulk_of_1000_is_applied_and_its_large_reply_arrives(
    running_service: Application, client: ContactClient
) -> None:
    bulk = bulk_of(
        [
            {"first_name": f"Caller {i}", "phone_numbers": [{"number": f"+1555444{i:04d}"}]}
            for i in range(1000)
        ]
    )
    reply = await client.bulk_create(bulk, timeout=60)
    assert (reply.created, reply.failed) == (1000, 0)
    assert len(reply.model_dump_json()) > 64 * 1024  # large enough to travel compressed
    assert [i.index for i in reply.items] == list(range(1000))
    last = ok(await client.lookup_phone(ACME, "+15554440999"))
    assert last.id == reply.items[999].contact_id
