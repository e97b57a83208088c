"""The use cases against hand-written fakes: rules, idempotency, recovery. Fast; no broker, no store."""

from typing import Any

import pytest

from contracts import commands as c
from contracts import queries as q
from contracts.replies import ContactReply
from service.service_layer.handlers import handle_command
from service.service_layer.queries import (
    batch_lookup_contacts,
    get_contact,
    list_contacts,
    lookup_contact,
)
from tests.factories import ModelT, command, create_contact, present
from tests.unit.fakes import FakeClock, FakeCommandLog, FakeContacts, FakePublisher, make_services

CUST, OTHER = "5e4a0680-804e-11ec-8477-2fea5968d85b", "7f000000-0000-0000-0000-000000000001"


def create(command_id: str, customer_id: str = CUST, **contact: Any) -> c.CreateContact:
    body = {
        "first_name": "John",
        "last_name": "Smith",
        "phone_numbers": [{"number": "+15551234567", "type": "mobile", "is_primary": True}],
    }
    body.update(contact)
    return create_contact(customer_id, command_id=command_id, **body)


def change(kind: type[ModelT], command_id: str, contact_id: str, **fields: Any) -> ModelT:
    """A ``kind`` command on contact ``contact_id`` of CUST."""
    return command(kind, command_id=command_id, customer_id=CUST, contact_id=contact_id, **fields)


async def test_create_then_redeliver_gives_same_reply_and_one_event() -> None:
    svc = make_services()
    first = await handle_command(create("cmd-1"), svc=svc)
    again = await handle_command(create("cmd-1"), svc=svc)
    assert first == again
    assert first["ok"] is True
    assert len(svc.contacts.rows) == 1
    events = svc.events.published
    assert [e["type"] for e in events] == ["contact.created"]
    assert events[0]["version"] == 1 and events[0]["cause"] == {
        "command_id": "cmd-1",
        "command_type": "create_contact",
    }


async def test_second_claim_of_a_number_fails_and_changes_nothing() -> None:
    svc = make_services()
    await handle_command(create("cmd-1"), svc=svc)
    reply = await handle_command(
        create("cmd-2", first_name="Jane", phone_numbers=[{"number": "(555) 123-4567"}]), svc=svc
    )
    assert reply["ok"] is False
    assert reply["error"]["code"] == "ADDRESS_ALREADY_EXISTS"
    assert reply["error"]["field"] == "contact.phone_numbers[0].number"
    assert len(svc.contacts.rows) == 1


async def test_same_number_is_free_in_another_customer_and_lookups_stay_apart() -> None:
    svc = make_services()
    mine = await handle_command(create("cmd-1"), svc=svc)
    theirs = await handle_command(create("cmd-1", customer_id=OTHER, first_name="Other"), svc=svc)
    assert theirs["ok"] and mine["result"]["id"] != theirs["result"]["id"]
    found = await lookup_contact(q.LookupContact(customer_id=OTHER, phone="555-123-4567"), svc=svc)
    assert isinstance(found, ContactReply)  # no directory: the store answers, with a model
    assert found.result is not None and found.result.first_name == "Other"
    cross = await get_contact(q.GetContact(customer_id=OTHER, contact_id=mine["result"]["id"]), svc=svc)
    assert cross.error is not None and cross.error.code == "CONTACT_NOT_FOUND"
    cross_update = await handle_command(
        command(
            c.UpdateContact,
            command_id="u",
            customer_id=OTHER,
            contact_id=mine["result"]["id"],
            changes={"first_name": "X"},
        ),
        svc=svc,
    )
    assert cross_update["error"]["code"] == "CONTACT_NOT_FOUND"


async def test_soft_delete_releases_addresses_and_hides_contact() -> None:
    svc = make_services()
    created = await handle_command(create("cmd-1", emails=[{"address": "John@Acme.com"}]), svc=svc)
    contact_id = created["result"]["id"]
    deleted = await handle_command(
        c.DeleteContact(command_id="del-1", customer_id=CUST, contact_id=contact_id), svc=svc
    )
    assert deleted["ok"] and deleted["result"]["tm_delete"] is not None
    twice = await handle_command(
        c.DeleteContact(command_id="del-2", customer_id=CUST, contact_id=contact_id), svc=svc
    )
    assert twice["ok"]
    assert [e["type"] for e in svc.events.published] == ["contact.created", "contact.deleted"]
    gone = await lookup_contact(q.LookupContact(customer_id=CUST, email="JOHN@acme.com"), svc=svc)
    assert isinstance(gone, ContactReply) and gone.error is not None
    assert (
        await get_contact(q.GetContact(customer_id=CUST, contact_id=contact_id), svc=svc)
    ).error is not None
    assert (await list_contacts(q.ListContacts(customer_id=CUST), svc=svc)).result == []
    again = await handle_command(create("cmd-3", emails=[{"address": "john@acme.com"}]), svc=svc)
    assert again["ok"], again


async def test_crash_before_publish_is_recovered_on_redelivery_without_applying_twice() -> None:
    publisher = FakePublisher()
    publisher.fail_next = 1
    svc = make_services(events=publisher)
    with pytest.raises(ConnectionError):
        await handle_command(create("cmd-1"), svc=svc)
    assert publisher.published == []
    reply = await handle_command(create("cmd-1"), svc=svc)  # the redelivery
    assert reply["ok"]
    assert [e["type"] for e in publisher.published] == ["contact.created"]
    assert len(svc.contacts.rows) == 1


async def test_crash_between_contact_write_and_log_is_answered_from_the_stored_outcome() -> None:
    class FailingOnceLog(FakeCommandLog):
        armed = False

        async def record(self, *, outcome: Any) -> None:
            if self.armed:
                self.armed = False
                raise ConnectionError("store went away (fake)")
            await super().record(outcome=outcome)

    log = FailingOnceLog()
    svc = make_services(log=log)
    created = await handle_command(create("cmd-1"), svc=svc)
    contact_id = created["result"]["id"]
    add = change(c.AddPhoneNumber, "add-1", contact_id, phone_number={"number": "+15553334444"})
    log.armed = True
    with pytest.raises(ConnectionError):
        await handle_command(add, svc=svc)
    reply = await handle_command(add, svc=svc)
    assert reply["ok"], reply
    assert len(reply["result"]["phone_numbers"]) == 2
    # Applied once (version 2, not 3). Its event went out with the failed attempt and again with
    # the redelivery (events are published while the log is written): the same event both times.
    published = svc.events.published
    assert [e["version"] for e in published] == [1, 2, 2]
    assert published[1] == published[2]


async def test_update_is_partial_and_replay_does_not_revert_later_changes() -> None:
    svc = make_services()
    contact_id = (await handle_command(create("cmd-1", company="Acme Corp"), svc=svc))["result"]["id"]
    first = change(c.UpdateContact, "u1", contact_id, changes={"display_name": "John Smith (VIP)"})
    second = change(c.UpdateContact, "u2", contact_id, changes={"display_name": "J. Smith"})
    await handle_command(first, svc=svc)
    await handle_command(second, svc=svc)
    await handle_command(first, svc=svc)  # an operator replays the topic
    got = await get_contact(q.GetContact(customer_id=CUST, contact_id=contact_id), svc=svc)
    assert got.result is not None
    assert got.result.display_name == "J. Smith" and got.result.company == "Acme Corp"
    updates = [e for e in svc.events.published if e["type"] == "contact.updated"]
    assert [e["changed_fields"] for e in updates] == [["display_name"], ["display_name"]]


async def test_list_pages_never_skip_or_repeat_contacts_sharing_a_timestamp() -> None:
    clock = FakeClock()
    svc = make_services(clock=clock)
    for i in range(23):
        if i % 5 == 0:
            clock.advance(1)  # groups of five share one tm_create
        await handle_command(create(f"cmd-{i}", phone_numbers=[{"number": f"+1555000{i:04d}"}]), svc=svc)
    seen, token, pages = [], "", 0
    while True:
        page = await list_contacts(q.ListContacts(customer_id=CUST, page_size=4, page_token=token), svc=svc)
        seen += [(r.tm_create, r.id) for r in page.result]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 23 and len(set(seen)) == 23
    assert seen == sorted(seen, reverse=True)
    assert pages == 6


async def test_bad_page_token_is_invalid_argument() -> None:
    reply = await list_contacts(
        q.ListContacts(customer_id=CUST, page_token="not-a-token!"), svc=make_services()
    )
    assert reply.error is not None and reply.error.field == "page_token"


async def test_bulk_create_reports_each_item_and_applies_the_rest() -> None:
    svc = make_services()
    bulk = c.BulkCreateContacts(
        command_id="bulk-1",
        customer_id=CUST,
        contacts=[
            {"first_name": "A", "phone_numbers": [{"number": "+15550000001"}]},
            {"first_name": "B", "phone_numbers": [{"number": "not a phone"}]},
            {"first_name": "C", "id": "forced"},
            {"first_name": "D", "phone_numbers": [{"number": "+1 555 000 0001"}]},
            {"first_name": "E", "external_id": "crm-1"},
            {"first_name": "E2", "external_id": "crm-1"},
        ],
    )
    reply = await handle_command(bulk, svc=svc)
    assert (reply["created"], reply["updated"], reply["failed"]) == (2, 1, 3)
    assert [(e["index"], e["error"]["code"]) for e in reply["errors"]] == [
        (1, "INVALID_ARGUMENT"),
        (2, "INVALID_ARGUMENT"),
        (3, "ADDRESS_ALREADY_EXISTS"),
    ]
    assert reply["errors"][0]["error"]["field"] == "contacts[1].phone_numbers[0].number"
    assert reply["errors"][1]["error"]["field"] == "contacts[2].id"
    assert await handle_command(bulk, svc=svc) == reply
    assert len(svc.contacts.rows) == 2


def _bulk_of_seven() -> c.BulkCreateContacts:
    phone = [{"number": "+15550000001"}]
    return c.BulkCreateContacts(
        command_id="bulk-7",
        customer_id=CUST,
        contacts=[
            {"first_name": "A", "phone_numbers": phone},
            {"first_name": "B", "emails": [{"address": "b@example.com"}]},
            {"first_name": "C", "phone_numbers": [{"number": "bad"}]},
            {"first_name": "D", "phone_numbers": phone},  # wanted by A, three chunks earlier at 1
            {"first_name": "E", "external_id": "crm-1"},
            {"first_name": "F", "emails": [{"address": "B@example.com"}]},
            {"first_name": "G", "external_id": "crm-1"},
        ],
    )


@pytest.mark.parametrize("chunk", [1, 2, 3])
async def test_bulk_chunks_written_while_the_next_is_built_answer_as_one(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = await handle_command(_bulk_of_seven(), svc=make_services())
    monkeypatch.setattr("service.service_layer.upsert.CHUNK", chunk)
    svc = make_services()
    assert await handle_command(_bulk_of_seven(), svc=svc) == whole
    assert (whole["created"], whole["updated"], whole["failed"]) == (3, 1, 3)
    assert [e["index"] for e in whole["errors"]] == [2, 3, 5]  # the earlier item keeps the address
    assert [e["contact"]["id"] for e in svc.events.published] == [c["id"] for c in whole["contacts"]]


async def test_a_store_failure_in_one_chunk_fails_the_bulk_as_itself_and_the_retry_completes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class FailingOnSecondInsert(FakeContacts):
        inserts = 0

        async def insert_many(self, *, items: Any) -> set[str]:
            self.inserts += 1
            if self.inserts == 2:
                raise ConnectionError("store went away (fake)")
            return await super().insert_many(items=items)

    whole = await handle_command(_bulk_of_seven(), svc=make_services())
    monkeypatch.setattr("service.service_layer.upsert.CHUNK", 2)
    svc = make_services(contacts=FailingOnSecondInsert())
    with pytest.raises(ConnectionError):  # not an ExceptionGroup: the retry rules go by its type
        await handle_command(_bulk_of_seven(), svc=svc)
    assert await handle_command(_bulk_of_seven(), svc=svc) == whole


async def test_batch_lookup_answers_each_phone_in_order() -> None:
    svc = make_services()
    await handle_command(create("cmd-1"), svc=svc)
    reply = await batch_lookup_contacts(
        q.BatchLookupContacts(customer_id=CUST, phones=["555 123 4567", "+15550000000", "nope"]),
        svc=svc,
    )
    assert [m.result.first_name if m.result else present(m.error).code for m in reply.result] == [
        "John",
        "CONTACT_NOT_FOUND",
        "INVALID_ARGUMENT",
    ]


async def test_claim_left_by_a_crashed_create_is_honoured_only_during_the_grace_period() -> None:
    clock = FakeClock()
    contacts = FakeContacts()
    svc = make_services(clock=clock, contacts=contacts)
    from service.domain.model import Address

    await svc.addresses.claim(
        customer_id=CUST,
        address=Address("phone", "+15551234567"),
        contact_id="ghost",
        now=clock.now(),
    )
    blocked = await handle_command(create("cmd-1"), svc=svc)
    assert blocked["error"]["code"] == "ADDRESS_ALREADY_EXISTS"
    clock.advance(31)
    assert (await handle_command(create("cmd-2"), svc=svc))["ok"]


async def test_a_bulk_repeating_a_released_external_id_updates_the_contact_its_first_item_made() -> None:
    svc = make_services()

    def bulk(command_id: str, *names: str) -> c.BulkCreateContacts:
        items = [{"first_name": n, "external_id": "crm-9"} for n in names]
        return c.BulkCreateContacts(command_id=command_id, customer_id=CUST, contacts=items)

    first = await handle_command(bulk("b-1", "Old"), svc=svc)
    old_id = first["items"][0]["contact_id"]
    await handle_command(c.DeleteContact(command_id="d-1", customer_id=CUST, contact_id=old_id), svc=svc)
    again = await handle_command(bulk("b-2", "New", "Newer"), svc=svc)
    assert [(i["status"], i["contact_id"] == again["items"][0]["contact_id"]) for i in again["items"]] == [
        ("created", True),
        ("updated", True),
    ]
    assert again["items"][0]["contact_id"] != old_id
