"""The caller directory: the same answers as the store, whatever order events arrive in."""

import random
from typing import Any

from hypothesis import given

from contracts import commands as c
from contracts import queries as q
from contracts.replies import BatchLookupReply, ContactReply
from service.domain.model import Address, Contact
from service.service_layer import mapping
from service.service_layer.context import Services
from service.service_layer.directory import UNKNOWN, CallerDirectory, contact_reply
from service.service_layer.handlers import handle_command
from service.service_layer.ports import JsonDict
from service.service_layer.queries import batch_lookup_contacts, lookup_contact
from tests.factories import ModelT, command, create_contact
from tests.unit.fakes import make_services
from tests.unit.test_mapping import contacts

CUST, OTHER = "cust-a", "cust-b"


def card(
    contact_id: str, version: int, *phones: str, customer: str = CUST, deleted: bool = False
) -> JsonDict:
    return {
        "id": contact_id,
        "customer_id": customer,
        "first_name": f"{contact_id} v{version}",
        "phone_numbers": [{"number_e164": p} for p in phones],
        "emails": [],
        "tm_delete": "2026-01-01T00:00:00.000000Z" if deleted else None,
    }


def phone(value: str) -> Address:
    return Address("phone", value)


def held(directory: CallerDirectory, address: Address, customer: str = CUST) -> bytes:
    found = directory.find(customer, address)
    return found if isinstance(found, bytes) else b""


@given(contacts())
def test_a_contact_is_found_by_each_phone_and_email_as_the_store_path_would_reply(contact: Contact) -> None:
    directory = CallerDirectory()
    directory.apply(mapping.contact_json(contact), version=contact.version)
    expected = ContactReply(result=mapping.contact_to_wire(contact)).model_dump_json().encode()
    for address in contact.addresses():
        if address.kind == "external":
            continue
        found = directory.find(contact.customer_id, address)
        if contact.is_deleted:
            assert found is None
        else:
            assert isinstance(found, bytes) and contact_reply(found) == expected
        assert directory.find(contact.customer_id + "-other", address) is None


def test_each_contact_keeps_its_newest_version_in_any_order() -> None:
    directory = CallerDirectory()
    assert directory.apply(card("x", 2, "+15550000002"), version=2)
    assert not directory.apply(card("x", 1, "+15550000001"), version=1)  # older: ignored
    assert not directory.apply(card("x", 2, "+15550000009"), version=2)  # same version again
    assert directory.find(CUST, phone("+15550000001")) is None
    assert directory.find(CUST, phone("+15550000009")) is None
    assert b"x v2" in held(directory, phone("+15550000002"))
    assert directory.apply(card("x", 3, "+15550000003"), version=3)
    assert directory.find(CUST, phone("+15550000002")) is None  # the number it gave up
    assert directory.active == 1


def test_a_deleted_contact_stays_deleted_when_an_older_event_arrives_late() -> None:
    directory = CallerDirectory()
    directory.apply(card("x", 4, "+15550000001", deleted=True), version=4)
    directory.apply(card("x", 3, "+15550000001"), version=3)
    assert directory.find(CUST, phone("+15550000001")) is None
    assert directory.active == 0 and len(directory) == 1


def test_a_number_seen_with_two_contacts_is_left_to_the_store_until_the_move_is_complete() -> None:
    directory = CallerDirectory()
    directory.apply(card("x", 1, "+15550000001"), version=1)
    directory.apply(card("y", 1, "+15550000001"), version=1)  # y's gain arrived before x's loss
    assert directory.find(CUST, phone("+15550000001")) is UNKNOWN
    directory.apply(card("x", 2), version=2)
    assert b'"id":"y"' in held(directory, phone("+15550000001"))


def test_customers_are_apart() -> None:
    directory = CallerDirectory()
    directory.apply(card("x", 1, "+15550000001"), version=1)
    directory.apply(card("z", 1, "+15550000001", customer=OTHER), version=1)
    assert b'"id":"x"' in held(directory, phone("+15550000001"))
    assert b'"id":"z"' in held(directory, phone("+15550000001"), OTHER)
    assert directory.find("cust-c", phone("+15550000001")) is None


# --- the directory against the store path, fed by the real handlers' events ---


def _create(n: int, *phones: str, email: str = "") -> c.CreateContact:
    body: dict[str, Any] = {"first_name": f"n{n}", "phone_numbers": [{"number": p} for p in phones]}
    if email:
        body["emails"] = [{"address": email}]
    return create_contact(CUST, command_id=f"create-{n}", **body)


def change(kind: type[ModelT], command_id: str, contact_id: str, **fields: Any) -> ModelT:
    """A ``kind`` command on contact ``contact_id`` of CUST."""
    return command(kind, command_id=command_id, customer_id=CUST, contact_id=contact_id, **fields)


async def _history(svc: Services) -> list[str]:
    """Creates, updates, a number moving from one contact to another, a delete. Returns contact ids."""
    ids, first_phone = [], []
    for n in range(4):
        reply = await handle_command(_create(n, f"+1555000010{n}", email=f"p{n}@example.com"), svc=svc)
        ids.append(reply["result"]["id"])
        first_phone.append(reply["result"]["phone_numbers"][0]["id"])
    moves: list[c.ContactCommand] = [
        change(c.RemovePhoneNumber, "m1", ids[0], phone_number_id=first_phone[0]),
        change(c.AddPhoneNumber, "m2", ids[1], phone_number={"number": "+15550000100"}),
        change(c.UpdateContact, "m3", ids[2], changes={"first_name": "Renamed"}),
        change(c.DeleteContact, "m4", ids[3]),
    ]
    for move in moves:
        reply = await handle_command(move, svc=svc)
        assert reply["ok"], reply
    return ids


class _Trusted:
    def __init__(self, directory: CallerDirectory, *, trusted: bool = True) -> None:
        self.directory, self.trusted, self.asked = directory, trusted, 0

    async def caught_up(self) -> bool:
        self.asked += 1
        return self.trusted


async def test_fed_every_event_in_any_order_the_directory_answers_as_the_store_does() -> None:
    svc = make_services()
    await _history(svc)
    events = list(svc.events.published)
    asks = [q.LookupContact(customer_id=CUST, phone=f"+1555000010{n}") for n in range(5)] + [
        q.LookupContact(customer_id=CUST, email=f"P{n}@example.com") for n in range(5)
    ]
    from_store = [await lookup_contact(ask, svc=svc) for ask in asks]
    assert [isinstance(r, ContactReply) and r.ok for r in from_store] == [True, True, True, False, False] * 2
    for seed in range(20):
        random.Random(seed).shuffle(events)
        directory = CallerDirectory()
        for event in events:
            directory.apply(event["contact"], version=event["version"])
        trusted = _Trusted(directory)
        answers = [await lookup_contact(ask, svc=_with(svc, trusted)) for ask in asks]
        assert [_parse(a) for a in answers] == from_store
        # Every contact found came from the directory (the store path answers with a model).
        assert [isinstance(a, bytes) for a in answers] == [True, True, True, False, False] * 2


async def test_lookups_read_the_store_when_the_directory_is_behind_or_unsure() -> None:
    svc = make_services()
    ids = await _history(svc)
    ask = q.LookupContact(customer_id=CUST, phone="+15550000100")  # now contact 1's
    stale = CallerDirectory()
    stale.apply(card(ids[0], 1, "+15550000100"), version=1)
    behind = _Trusted(stale, trusted=False)
    reply = await lookup_contact(ask, svc=_with(svc, behind))
    assert isinstance(reply, ContactReply) and reply.result is not None and reply.result.id == ids[1]
    assert behind.asked == 1
    unsure = CallerDirectory()
    unsure.apply(card(ids[0], 1, "+15550000100"), version=1)
    unsure.apply(card(ids[1], 1, "+15550000100"), version=1)
    reply = await lookup_contact(ask, svc=_with(svc, _Trusted(unsure)))
    assert isinstance(reply, ContactReply) and reply.result is not None and reply.result.id == ids[1]


async def test_a_batch_lookup_from_the_directory_equals_the_store_answer() -> None:
    svc = make_services()
    await _history(svc)
    directory = CallerDirectory()
    for event in svc.events.published:
        directory.apply(event["contact"], version=event["version"])
    ask = q.BatchLookupContacts(
        customer_id=CUST,
        phones=["+15550000100", "555-000-0101", "+15550000103", "not a number", "+15550000199"],
    )
    from_store = await batch_lookup_contacts(ask, svc=svc)
    trusted = _Trusted(directory)
    assert await batch_lookup_contacts(ask, svc=_with(svc, trusted)) == from_store
    assert trusted.asked == 1
    assert [m.result is not None for m in from_store.result] == [True, True, False, False, False]


def _with(svc: Services, directory: _Trusted) -> Services:
    from dataclasses import replace

    return replace(svc, directory=directory)


def _parse(answer: ContactReply | BatchLookupReply | bytes) -> Any:
    return ContactReply.model_validate_json(answer) if isinstance(answer, bytes) else answer
