"""Commands in batches (service_layer.batch) against fakes: same replies as one by one, one event
publish and one log write per flush, a contact changed at most once between flushes, and what a
failure half-way leaves behind."""

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pytest

from contracts import commands as c
from service.domain.model import Address
from service.service_layer.batch import CommandBatch, Stopped
from service.service_layer.context import Services
from service.service_layer.handlers import handle_command
from service.service_layer.ports import Claim, JsonDict, Outcome
from tests.unit.fakes import (
    FakeAddressBook,
    FakeCommandLog,
    FakeContacts,
    FakePublisher,
    FakeServices,
    make_services,
)

CUST = "cust-batch"


class CallLog:
    """Which port calls happened, in order (shared by the recording fakes below)."""

    def __init__(self) -> None:
        self.calls: list[str] = []


class RecordingContacts(FakeContacts):
    def __init__(self, calls: CallLog) -> None:
        super().__init__()
        self.calls = calls

    async def replace(self, *, contact: Any, expected_version: int, outcome: Outcome) -> bool:
        self.calls.calls.append(f"replace {outcome.command_id}")
        return await super().replace(contact=contact, expected_version=expected_version, outcome=outcome)


class RecordingLog(FakeCommandLog):
    def __init__(self, calls: CallLog) -> None:
        super().__init__()
        self.calls = calls

    async def record_many(self, *, outcomes: Sequence[Outcome], published: bool) -> None:
        self.calls.calls.append("log " + ",".join(o.command_id for o in outcomes))
        await super().record_many(outcomes=outcomes, published=published)


class RecordingPublisher(FakePublisher):
    def __init__(self, calls: CallLog) -> None:
        super().__init__()
        self.calls = calls

    async def publish(self, *, events: Sequence[JsonDict]) -> None:
        self.calls.calls.append(f"publish {len(events)}")
        await super().publish(events=events)


def recording_services() -> tuple[FakeServices, CallLog]:
    calls = CallLog()
    svc = make_services(
        contacts=RecordingContacts(calls), log=RecordingLog(calls), events=RecordingPublisher(calls)
    )
    return svc, calls


def create(n: int, phone: str | None = None) -> c.CreateContact:
    contact: dict[str, Any] = {"first_name": f"C{n}"}
    if phone:
        contact["phone_numbers"] = [{"number": phone}]
    return c.CreateContact.model_validate(
        {"command_id": f"create-{n}", "customer_id": CUST, "contact": contact}
    )


def update(n: int, contact_id: str, name: str) -> c.UpdateContact:
    return c.UpdateContact.model_validate(
        {
            "command_id": f"update-{n}",
            "customer_id": CUST,
            "contact_id": contact_id,
            "changes": {"last_name": name},
        }
    )


async def run_batch(svc: Services, commands: Sequence[c.ContactCommand]) -> list[JsonDict]:
    """As the commands entrypoint runs a batch: start each in order, flush, then the replies."""
    batch = CommandBatch(svc)
    batch.prefetch(commands)
    tasks = [await batch.start(command) for command in commands]
    await batch.flush()
    await batch.close()
    return [task.result() for task in tasks]


async def test_a_batch_answers_as_one_by_one_with_one_publish_and_one_log_write() -> None:
    one_by_one, _ = recording_services()
    singly = [await handle_command(create(n), svc=one_by_one) for n in range(5)]
    svc, calls = recording_services()
    batched = await run_batch(svc, [create(n) for n in range(5)])
    assert batched == singly
    assert calls.calls == ["publish 5", "log " + ",".join(f"create-{n}" for n in range(5))]
    assert svc.events.published == one_by_one.events.published


async def test_a_second_change_to_a_contact_waits_for_the_first_to_be_logged() -> None:
    svc, calls = recording_services()
    created = await handle_command(create(0), svc=svc)
    contact_id = created["result"]["id"]
    calls.calls.clear()
    replies = await run_batch(svc, [update(1, contact_id, "A"), update(2, contact_id, "B"), create(3)])
    assert [r["result"]["last_name"] for r in replies[:2]] == ["A", "B"]
    assert calls.calls == [
        "replace update-1",
        "publish 1",
        "log update-1",  # flushed before the same contact changes again
        "replace update-2",
        "publish 2",
        "log update-2,create-3",
    ]


async def test_a_command_repeated_in_a_batch_is_applied_once_and_answered_the_same() -> None:
    svc, _ = recording_services()
    first, again = await run_batch(svc, [create(0, "+15551230000"), create(0, "+15551230000")])
    assert first == again and first["ok"]
    assert len(svc.contacts.rows) == 1
    assert [e["type"] for e in svc.events.published] == ["contact.created"]


async def test_after_a_failed_flush_a_redelivery_applies_nothing_twice() -> None:
    svc, _ = recording_services()
    commands = [create(n) for n in range(4)]
    batch = CommandBatch(svc)
    batch.prefetch(commands)
    for command in commands[:2]:
        await batch.apply(command)
    svc.events.fail_next = 1  # the broker goes away at the flush
    with pytest.raises(ConnectionError):
        await batch.flush()
    # Redelivery of the whole batch: the first two answer from what they stored, nothing twice.
    replies = await run_batch(svc, commands)
    assert all(r["ok"] for r in replies)
    assert len(svc.contacts.rows) == 4
    created = [e["contact_id"] for e in svc.events.published if e["type"] == "contact.created"]
    assert sorted(set(created)) == sorted(created) and len(created) == 4
    assert len(svc.log.entries) == 4 and all(e.published for e in svc.log.entries.values())


async def test_an_address_given_up_in_a_batch_can_be_taken_by_the_next_command_of_it() -> None:
    svc, _ = recording_services()
    owner = await handle_command(create(0, "+15551230001"), svc=svc)
    phone_id = owner["result"]["phone_numbers"][0]["id"]
    give_up = c.RemovePhoneNumber(
        command_id="rm-1", customer_id=CUST, contact_id=owner["result"]["id"], phone_number_id=phone_id
    )
    removed, taken = await run_batch(svc, [give_up, create(1, "(555) 123-0001")])
    assert removed["ok"] and taken["ok"], taken
    claim = svc.addresses.claims[(CUST, Address("phone", "+15551230001"))]
    assert claim.contact_id == taken["result"]["id"]


class SlowContacts(FakeContacts):
    """Writes take 20 ms; counts how many are under way at once."""

    def __init__(self) -> None:
        super().__init__()
        self.now = self.most = 0

    async def replace(self, *, contact: Any, expected_version: int, outcome: Outcome) -> bool:
        self.now += 1
        self.most = max(self.most, self.now)
        await asyncio.sleep(0.02)
        self.now -= 1
        return await super().replace(contact=contact, expected_version=expected_version, outcome=outcome)


async def seeded(count: int) -> tuple[FakeServices, SlowContacts, list[str]]:
    contacts = SlowContacts()
    svc = make_services(contacts=contacts)
    ids = [
        (await handle_command(create(n, f"+1555123{n:04d}"), svc=svc))["result"]["id"] for n in range(count)
    ]
    return svc, contacts, ids


async def test_changes_to_different_contacts_overlap_their_writes() -> None:
    svc, contacts, ids = await seeded(5)
    replies = await run_batch(svc, [update(n, contact_id, f"L{n}") for n, contact_id in enumerate(ids)])
    assert [r["result"]["last_name"] for r in replies] == [f"L{n}" for n in range(5)]
    assert contacts.most == 5


async def test_a_command_claiming_an_address_waits_for_earlier_ones_that_may_give_one_up() -> None:
    svc, contacts, ids = await seeded(2)
    phone_id = contacts.rows[ids[0]][0].phone_numbers[0].id
    give_up = c.RemovePhoneNumber(
        command_id="rm", customer_id=CUST, contact_id=ids[0], phone_number_id=phone_id
    )
    take = c.AddPhoneNumber.model_validate(
        {
            "command_id": "add",
            "customer_id": CUST,
            "contact_id": ids[1],
            "phone_number": {"number": "+15551230000"},
        }
    )
    removed, taken = await run_batch(svc, [give_up, take])
    assert removed["ok"] and taken["ok"], taken
    assert contacts.most == 1


class SlowClaims(FakeAddressBook):
    """The fake address book (its claims shared), claiming in 50 ms."""

    def __init__(self, book: FakeAddressBook) -> None:
        super().__init__()
        self.claims = book.claims

    async def claim(
        self, *, customer_id: str, address: Address, contact_id: str, now: datetime
    ) -> Claim | None:
        await asyncio.sleep(0.05)
        return await super().claim(customer_id=customer_id, address=address, contact_id=contact_id, now=now)


async def test_a_command_giving_an_address_up_waits_for_earlier_ones_claiming_one() -> None:
    """Found by the fault suite: "add P to B" then "remove P from A" in one batch ran at once, so
    the add could see P already released and succeed, though in order it must fail."""
    svc, contacts, ids = await seeded(2)
    svc = dataclasses.replace(svc, addresses=SlowClaims(svc.addresses))  # lands after the release
    held = contacts.rows[ids[0]][0].phone_numbers[0]
    take = c.AddPhoneNumber.model_validate(
        {
            "command_id": "add",
            "customer_id": CUST,
            "contact_id": ids[1],
            "phone_number": {"number": held.number_e164},
        }
    )
    give_up = c.RemovePhoneNumber(
        command_id="rm", customer_id=CUST, contact_id=ids[0], phone_number_id=held.id
    )
    taken, removed = await run_batch(svc, [take, give_up])
    assert not taken["ok"] and taken["error"]["code"] == "ADDRESS_ALREADY_EXISTS", taken
    assert removed["ok"]
    assert contacts.most == 1


async def test_a_refusal_is_logged_before_a_later_command_changes_what_it_saw() -> None:
    """A crash after "remove P from A" but before the batch's log write must not let a
    redelivered "add P to B" (refused: P was A's) succeed."""
    svc, calls = recording_services()
    owner, other = [await handle_command(create(n, f"+1555123000{n}"), svc=svc) for n in (0, 1)]
    held = owner["result"]["phone_numbers"][0]
    take = c.AddPhoneNumber.model_validate(
        {
            "command_id": "add",
            "customer_id": CUST,
            "contact_id": other["result"]["id"],
            "phone_number": {"number": held["number_e164"]},
        }
    )
    give_up = c.RemovePhoneNumber(
        command_id="rm", customer_id=CUST, contact_id=owner["result"]["id"], phone_number_id=held["id"]
    )
    calls.calls.clear()
    batch = CommandBatch(svc)
    batch.prefetch([take, give_up])
    refused = await batch.apply(take)
    assert refused["error"]["code"] == "ADDRESS_ALREADY_EXISTS", refused
    await batch.apply(give_up)
    assert calls.calls == ["log add", "replace rm"]  # the refusal is durable before the removal
    svc.events.fail_next = 1  # then the broker goes away at the flush
    with pytest.raises(ConnectionError):
        await batch.flush()
    # Redelivery of the batch: the same answers, and P belongs to nobody.
    again, removed = await run_batch(svc, [take, give_up])
    assert again == refused and removed["ok"], again
    assert [p.number_e164 for p in svc.contacts.rows[other["result"]["id"]][0].phone_numbers] == [
        "+15551230001"
    ]


class BrokenRow(SlowContacts):
    """One contact's row cannot be read (a bug, not an outage)."""

    broken = ""

    async def get(self, *, customer_id: str, contact_id: str) -> Any:
        if contact_id == self.broken:
            raise RuntimeError("corrupt row")
        return await super().get(customer_id=customer_id, contact_id=contact_id)


async def test_no_command_starts_after_one_failed() -> None:
    contacts = BrokenRow()
    svc = make_services(contacts=contacts)
    ids = [(await handle_command(create(n), svc=svc))["result"]["id"] for n in range(2)]
    contacts.broken = ids[0]
    batch = CommandBatch(svc)
    failing = await batch.start(update(1, ids[0], "x"))
    await asyncio.wait([failing])
    with pytest.raises(Stopped):
        await batch.start(update(2, ids[1], "y"))
    await batch.flush()
    assert batch.failed and isinstance(failing.exception(), RuntimeError)
    assert contacts.rows[ids[1]][0].last_name == ""  # the later command never ran


class CountingAddresses(FakeAddressBook):
    """Counts the claims asked for: one at a time, or many at once."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self._in_many = False

    async def claim(self, **kwargs: Any) -> Any:
        if not self._in_many:
            self.calls.append("claim")
        return await super().claim(**kwargs)

    async def claim_many(self, **kwargs: Any) -> Any:
        self.calls.append(f"claim_many {len(kwargs['wanted'])}")
        self._in_many = True
        try:
            return await super().claim_many(**kwargs)
        finally:
            self._in_many = False


async def test_addresses_of_a_batch_are_claimed_ahead_in_one_insert_and_unused_ones_given_back() -> None:
    addresses = CountingAddresses()
    svc = make_services(addresses=addresses)
    ids = [(await handle_command(create(n), svc=svc))["result"]["id"] for n in range(3)]
    addresses.calls.clear()

    def add(n: int, contact_id: str) -> c.AddPhoneNumber:
        phone = {"number": f"+1555999000{n}"}
        body = {
            "command_id": f"add-{n}",
            "customer_id": CUST,
            "contact_id": contact_id,
            "phone_number": phone,
        }
        return c.AddPhoneNumber.model_validate(body)

    replies = await run_batch(svc, [add(0, ids[0]), add(1, "no-such-contact"), add(2, ids[2])])
    assert [r["ok"] for r in replies] == [True, False, True]
    assert addresses.calls == ["claim_many 3"]  # and no claim per command
    held = {a.value: claim.contact_id for (_, a), claim in addresses.claims.items() if a.kind == "phone"}
    assert held == {"+15559990000": ids[0], "+15559990002": ids[2]}  # the failed one's is given back
