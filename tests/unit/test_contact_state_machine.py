"""The command handlers as a state machine (hypothesis): random sequences of creates, updates,
deletes, phone/email/tag changes, bulk creates and deletes, for two customers sharing the same
numbers, emails and external ids, against a plain in-memory model of what the service must hold.

After every step the replies must match the model (found / not found, ADDRESS_ALREADY_EXISTS when
an address is active on another contact of the same customer, never because of the other
customer), and get, list and lookups must agree with it. Commands go through ``handle_command``
one by one or through ``CommandBatch`` (the consumer's path) several at a time; a replayed
command (same command_id) answers as before and changes nothing. Tenant isolation is part of it:
every rule may aim at the other customer's contacts, and the checks read each customer apart.
"""

import asyncio
import base64
import itertools
import json
import os
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from contracts import commands as c
from contracts import queries as q
from contracts.models import Contact as WireContact
from contracts.replies import BulkCreateReply, BulkDeleteReply, ContactReply
from service.entrypoints.failures import input_error
from service.service_layer.batch import CommandBatch
from service.service_layer.handlers import handle_command
from service.service_layer.ports import JsonDict
from service.service_layer.queries import batch_lookup_contacts, get_contact, list_contacts, lookup_contact
from tests import strategies as s
from tests.unit.fakes import FakeServices, make_services

A, B = s.CUSTOMERS
Address = tuple[str, str]
"""(kind, value): ("phone", E.164), ("email", lowercase), ("external", id)."""


@dataclass
class MPhone:
    id: str
    e164: str
    primary: bool


@dataclass
class MEmail:
    id: str
    address: str
    primary: bool


@dataclass
class MContact:
    id: str
    customer: str
    first_name: str
    company: str
    external_id: str
    phones: list[MPhone] = field(default_factory=list)
    emails: list[MEmail] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    deleted: bool = False

    def addresses(self) -> set[Address]:
        if self.deleted:
            return set()
        held = {("phone", p.e164) for p in self.phones} | {("email", e.address) for e in self.emails}
        return held | ({("external", self.external_id)} if self.external_id else set())


def spec_addresses(spec: s.ContactSpec) -> list[Address]:
    """A valid spec's addresses, in the order the service claims them (repeats kept)."""
    wanted = [("phone", p.e164 or "") for p, _ in spec.phones] + [
        ("email", e.address or "") for e, _ in spec.emails
    ]
    return wanted + ([("external", spec.external_id)] if spec.external_id else [])


def spec_invalid(spec: s.ContactSpec) -> bool:
    return (
        any(p.e164 is None for p, _ in spec.phones)
        or any(e.address is None for e, _ in spec.emails)
        or sum(primary for _, primary in spec.phones) > 1
        or sum(primary for _, primary in spec.emails) > 1
    )


def twice(addresses: list[Address]) -> bool:
    return len(set(addresses)) != len(addresses)


@dataclass
class Sent:
    command: c.ContactCommand
    reply: JsonDict


class ContactMachine(RuleBasedStateMachine):
    contacts = Bundle("contacts")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.svc: FakeServices = make_services()
        self.model: dict[str, MContact] = {}
        self.sent: list[Sent] = []
        self.ids = itertools.count()
        self.queue: list[tuple[c.ContactCommand, str | None]] | None = None
        """Commands held for one CommandBatch (``batch`` rule), else None: applied one by one."""

    def teardown(self) -> None:
        self.loop.close()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def cid(self) -> str:
        return f"cmd-{next(self.ids)}"

    # --- the model ---

    def holder(self, customer: str, address: Address) -> MContact | None:
        found = [m for m in self.model.values() if m.customer == customer and address in m.addresses()]
        assert len(found) <= 1, f"model: {address} on {len(found)} contacts"
        return found[0] if found else None

    def active(self, customer: str, contact_id: str) -> MContact | None:
        m = self.model.get(contact_id)
        return m if m is not None and m.customer == customer and not m.deleted else None

    def clash(self, customer: str, addresses: list[Address], mine: str | None) -> bool:
        """Is any of ``addresses`` active on a contact of ``customer`` other than ``mine``?"""
        for address in addresses:
            owner = self.holder(customer, address)
            if owner is not None and owner.id != mine:
                return True
        return False

    # --- sending ---

    def send(self, command: c.ContactCommand) -> JsonDict:
        reply = self.run(handle_command(command, svc=self.svc))
        assert isinstance(reply, dict)
        self.sent.append(Sent(command, reply))
        return reply

    def send_batch(self, commands: list[c.ContactCommand]) -> list[JsonDict]:
        async def apply() -> list[JsonDict]:
            batch = CommandBatch(self.svc)
            batch.prefetch(commands)
            tasks = [await batch.start(command) for command in commands]
            await batch.flush()
            await batch.close()
            return [task.result() for task in tasks]

        replies: list[JsonDict] = self.run(apply())
        self.sent += [Sent(command, reply) for command, reply in zip(commands, replies, strict=True)]
        return replies

    def expect(self, reply: JsonDict, error: str | None) -> ContactReply:
        parsed = ContactReply.model_validate(reply)
        if error is None:
            assert parsed.ok and parsed.result is not None, parsed.error
        else:
            assert not parsed.ok and parsed.error is not None, f"expected {error}, got {parsed}"
            assert parsed.error.code == error, parsed.error
            assert parsed.error.message
        return parsed

    def check_contact(self, wire: WireContact, m: MContact) -> None:
        assert wire.id == m.id and wire.customer_id == m.customer
        assert (wire.first_name, wire.company, wire.external_id) == (m.first_name, m.company, m.external_id)
        assert [(p.id, p.number_e164, p.is_primary) for p in wire.phone_numbers] == [
            (p.id, p.e164, p.primary) for p in m.phones
        ]
        assert [(e.id, e.address, e.is_primary) for e in wire.emails] == [
            (e.id, e.address, e.primary) for e in m.emails
        ]
        assert wire.tag_ids == m.tags
        assert (wire.tm_delete is not None) == m.deleted

    # --- rules: creating ---

    @initialize(target=contacts)
    def seed(self) -> Any:
        """Both customers start with a contact holding the same number, email and external id."""
        spec = s.ContactSpec(
            "Seed",
            "",
            "crm-1",
            ((s.VALID_PHONES[0], True),),
            ((s.VALID_EMAILS[0], False),),
            (),
        )
        return multiple(*(self.create_contact(customer, spec) for customer in (A, B)))

    @precondition(lambda self: self.queue is None)
    @rule(target=contacts, customer=st.sampled_from(s.CUSTOMERS), spec=s.contact_specs)
    def create(self, customer: str, spec: s.ContactSpec) -> Any:
        created = self.create_contact(customer, spec)
        return multiple() if created is None else created

    def create_contact(self, customer: str, spec: s.ContactSpec) -> str | None:
        wanted = spec_addresses(spec)
        if spec_invalid(spec):
            error: str | None = "INVALID_ARGUMENT"
        elif twice(wanted) or self.clash(customer, wanted, None):
            error = "ADDRESS_ALREADY_EXISTS"
        else:
            error = None
        command = c.CreateContact.model_validate(
            {"command_id": self.cid(), "customer_id": customer, "contact": spec.wire()}
        )
        reply = self.expect(self.send(command), error)
        if reply.result is None:
            return None
        wire = reply.result
        m = MContact(
            wire.id,
            customer,
            spec.first_name,
            spec.company,
            spec.external_id,
            [
                MPhone(p.id, x.e164 or "", primary)
                for p, (x, primary) in zip(wire.phone_numbers, spec.phones, strict=True)
            ],
            [
                MEmail(e.id, x.address or "", primary)
                for e, (x, primary) in zip(wire.emails, spec.emails, strict=True)
            ],
            list(dict.fromkeys(spec.tags)),
        )
        assert len(m.phones) == len(spec.phones) and len(m.emails) == len(spec.emails)
        assert m.id not in self.model
        self.model[m.id] = m
        self.check_contact(wire, m)
        return m.id

    # --- rules: changing one contact (aimed at either customer: the other must not find it) ---

    def customer_for(self, contact_id: str, other: bool) -> str:
        owner = self.model[contact_id].customer
        return (B if owner == A else A) if other else owner

    def mutate(self, command: c.ContactCommand, error: str | None) -> None:
        """Send a command on one existing contact; when it succeeds the model (already changed
        by the caller) must equal the reply."""
        contact_id = str(command.model_dump()["contact_id"])
        if self.queue is not None:
            self.queue.append((command, error))
            return
        reply = self.expect(self.send(command), error)
        if reply.result is not None:
            self.check_contact(reply.result, self.model[contact_id])

    @rule(
        contact_id=contacts,
        other=st.booleans(),
        first_name=st.none() | s.names,
        company=st.none() | st.sampled_from(("", "Initech")),
        external_id=st.none() | s.external_ids,
    )
    def update(
        self,
        contact_id: str,
        other: bool,
        first_name: str | None,
        company: str | None,
        external_id: str | None,
    ) -> None:
        customer = self.customer_for(contact_id, other)
        m = self.active(customer, contact_id)
        changes = {
            k: v
            for k, v in (("first_name", first_name), ("company", company), ("external_id", external_id))
            if v is not None
        }
        command = c.UpdateContact.model_validate(
            {"command_id": self.cid(), "customer_id": customer, "contact_id": contact_id, "changes": changes}
        )
        if m is None:
            return self.mutate(command, "CONTACT_NOT_FOUND")
        if external_id and self.clash(customer, [("external", external_id)], m.id):
            return self.mutate(command, "ADDRESS_ALREADY_EXISTS")
        m.first_name = first_name if first_name is not None else m.first_name
        m.company = company if company is not None else m.company
        m.external_id = external_id if external_id is not None else m.external_id
        self.mutate(command, None)

    @rule(contact_id=contacts, other=st.booleans())
    def delete(self, contact_id: str, other: bool) -> None:
        customer = self.customer_for(contact_id, other)
        m = self.model[contact_id]
        command = c.DeleteContact(command_id=self.cid(), customer_id=customer, contact_id=contact_id)
        if m.customer != customer:
            return self.mutate(command, "CONTACT_NOT_FOUND")
        m.deleted = True  # deleting twice is harmless
        self.mutate(command, None)

    @rule(contact_id=contacts, other=st.booleans(), phone=s.phones, primary=st.booleans())
    def add_phone(self, contact_id: str, other: bool, phone: s.PhoneSpec, primary: bool) -> None:
        customer = self.customer_for(contact_id, other)
        m = self.active(customer, contact_id)
        command = c.AddPhoneNumber.model_validate(
            {
                "command_id": self.cid(),
                "customer_id": customer,
                "contact_id": contact_id,
                "phone_number": {"number": phone.raw, "is_primary": primary},
            }
        )
        if m is None:
            return self.mutate(command, "CONTACT_NOT_FOUND")
        if phone.e164 is None:
            return self.mutate(command, "INVALID_ARGUMENT")
        if self.holder(customer, ("phone", phone.e164)) is not None:
            return self.mutate(command, "ADDRESS_ALREADY_EXISTS")
        self.queue_or_learn(command, m, "phones", MPhone("?", phone.e164, primary), primary)

    def queue_or_learn(
        self, command: c.ContactCommand, m: MContact, kind: str, entry: MPhone | MEmail, primary: bool
    ) -> None:
        """Add an entry whose id the service makes (derived from the command; learnt from the reply)."""
        entries: list[Any] = getattr(m, kind)
        if primary:
            for other in entries:
                other.primary = False
        entries.append(entry)
        if self.queue is not None:
            self.pending_ids.append((command.command_id, entry, m.id, kind))
            self.queue.append((command, None))
            return
        reply = self.expect(self.send(command), None)
        assert reply.result is not None
        self.learn_id(reply.result, entry, kind)
        self.check_contact(reply.result, m)

    def learn_id(self, wire: WireContact, entry: MPhone | MEmail, kind: str) -> None:
        listed = wire.phone_numbers if kind == "phones" else wire.emails
        entry.id = listed[-1].id

    def pick_entry(self, m: MContact | None, kind: str, data: st.DataObject) -> str:
        """An entry id of ``m`` (or of another contact, or none at all) to aim a change at; not one
        added in the batch under way, whose id is not known yet ("?")."""
        everywhere: list[str] = [e.id for x in self.model.values() for e in getattr(x, kind) if e.id != "?"]
        mine: list[str] = [e.id for e in getattr(m, kind) if e.id != "?"] if m is not None else []
        use_mine: bool = data.draw(st.booleans())
        if mine and use_mine:
            return data.draw(st.sampled_from(mine))
        return data.draw(st.sampled_from([*everywhere, "no-such-entry"]))

    @rule(
        contact_id=contacts,
        other=st.booleans(),
        data=st.data(),
        phone=st.none() | s.phones,
        primary=st.none() | st.booleans(),
    )
    def update_phone(
        self,
        contact_id: str,
        other: bool,
        data: st.DataObject,
        phone: s.PhoneSpec | None,
        primary: bool | None,
    ) -> None:
        customer = self.customer_for(contact_id, other)
        m = self.active(customer, contact_id)
        entry_id = self.pick_entry(m, "phones", data)
        changes: dict[str, Any] = {}
        if phone is not None:
            changes["number"] = phone.raw
        if primary is not None:
            changes["is_primary"] = primary
        command = c.UpdatePhoneNumber.model_validate(
            {
                "command_id": self.cid(),
                "customer_id": customer,
                "contact_id": contact_id,
                "phone_number_id": entry_id,
                "changes": changes,
            }
        )
        if m is None:
            return self.mutate(command, "CONTACT_NOT_FOUND")
        if phone is not None and phone.e164 is None:
            return self.mutate(command, "INVALID_ARGUMENT")
        entry = next((p for p in m.phones if p.id == entry_id), None)
        if entry is None:
            return self.mutate(command, "PHONE_NUMBER_NOT_FOUND")
        if phone is not None and phone.e164 != entry.e164:
            assert phone.e164 is not None
            if self.holder(customer, ("phone", phone.e164)) is not None:
                return self.mutate(command, "ADDRESS_ALREADY_EXISTS")
            entry.e164 = phone.e164
        if primary:
            for p in m.phones:
                p.primary = p is entry
        elif primary is False:
            entry.primary = False
        self.mutate(command, None)

    @rule(contact_id=contacts, other=st.booleans(), data=st.data())
    def remove_phone(self, contact_id: str, other: bool, data: st.DataObject) -> None:
        customer = self.customer_for(contact_id, other)
        m = self.active(customer, contact_id)
        entry_id = self.pick_entry(m, "phones", data)
        command = c.RemovePhoneNumber(
            command_id=self.cid(), customer_id=customer, contact_id=contact_id, phone_number_id=entry_id
        )
        if m is None:
            return self.mutate(command, "CONTACT_NOT_FOUND")
        if not any(p.id == entry_id for p in m.phones):
            return self.mutate(command, "PHONE_NUMBER_NOT_FOUND")
        m.phones = [p for p in m.phones if p.id != entry_id]
        self.mutate(command, None)

    @rule(contact_id=contacts, other=st.booleans(), email=s.emails, primary=st.booleans())
    def add_email(self, contact_id: str, other: bool, email: s.EmailSpec, primary: bool) -> None:
        customer = self.customer_for(contact_id, other)
        m = self.active(customer, contact_id)
        command = c.AddEmail.model_validate(
            {
                "command_id": self.cid(),
                "customer_id": customer,
                "contact_id": contact_id,
                "email": {"address": email.raw, "is_primary": primary},
            }
        )
        if m is None:
            return self.mutate(command, "CONTACT_NOT_FOUND")
        if email.address is None:
            return self.mutate(command, "INVALID_ARGUMENT")
        if self.holder(customer, ("email", email.address)) is not None:
            return self.mutate(command, "ADDRESS_ALREADY_EXISTS")
        self.queue_or_learn(command, m, "emails", MEmail("?", email.address, primary), primary)

    @rule(
        contact_id=contacts,
        other=st.booleans(),
        data=st.data(),
        email=st.none() | s.emails,
        primary=st.none() | st.booleans(),
    )
    def update_email(
        self,
        contact_id: str,
        other: bool,
        data: st.DataObject,
        email: s.EmailSpec | None,
        primary: bool | None,
    ) -> None:
        customer = self.customer_for(contact_id, other)
        m = self.active(customer, contact_id)
        entry_id = self.pick_entry(m, "emails", data)
        changes: dict[str, Any] = {}
        if email is not None:
            changes["address"] = email.raw
        if primary is not None:
            changes["is_primary"] = primary
        command = c.UpdateEmail.model_validate(
            {
                "command_id": self.cid(),
                "customer_id": customer,
                "contact_id": contact_id,
                "email_id": entry_id,
                "changes": changes,
            }
        )
        if m is None:
            return self.mutate(command, "CONTACT_NOT_FOUND")
        if email is not None and email.address is None:
            return self.mutate(command, "INVALID_ARGUMENT")
        entry = next((e for e in m.emails if e.id == entry_id), None)
        if entry is None:
            return self.mutate(command, "EMAIL_NOT_FOUND")
        if email is not None and email.address != entry.address:
            assert email.address is not None
            if self.holder(customer, ("email", email.address)) is not None:
                return self.mutate(command, "ADDRESS_ALREADY_EXISTS")
            entry.address = email.address
        if primary:
            for e in m.emails:
                e.primary = e is entry
        elif primary is False:
            entry.primary = False
        self.mutate(command, None)

    @rule(contact_id=contacts, other=st.booleans(), data=st.data())
    def remove_email(self, contact_id: str, other: bool, data: st.DataObject) -> None:
        customer = self.customer_for(contact_id, other)
        m = self.active(customer, contact_id)
        entry_id = self.pick_entry(m, "emails", data)
        command = c.RemoveEmail(
            command_id=self.cid(), customer_id=customer, contact_id=contact_id, email_id=entry_id
        )
        if m is None:
            return self.mutate(command, "CONTACT_NOT_FOUND")
        if not any(e.id == entry_id for e in m.emails):
            return self.mutate(command, "EMAIL_NOT_FOUND")
        m.emails = [e for e in m.emails if e.id != entry_id]
        self.mutate(command, None)

    @rule(contact_id=contacts, other=st.booleans(), tag=s.tags)
    def add_tag(self, contact_id: str, other: bool, tag: str) -> None:
        customer = self.customer_for(contact_id, other)
        m = self.active(customer, contact_id)
        command = c.AddTag(command_id=self.cid(), customer_id=customer, contact_id=contact_id, tag_id=tag)
        if m is None:
            return self.mutate(command, "CONTACT_NOT_FOUND")
        if tag not in m.tags:
            m.tags.append(tag)
        self.mutate(command, None)

    @rule(contact_id=contacts, other=st.booleans(), tag=s.tags)
    def remove_tag(self, contact_id: str, other: bool, tag: str) -> None:
        customer = self.customer_for(contact_id, other)
        m = self.active(customer, contact_id)
        command = c.RemoveTag(command_id=self.cid(), customer_id=customer, contact_id=contact_id, tag_id=tag)
        if m is None:
            return self.mutate(command, "CONTACT_NOT_FOUND")
        if tag not in m.tags:
            return self.mutate(command, "TAG_NOT_FOUND")
        m.tags.remove(tag)
        self.mutate(command, None)

    # --- rules: several commands in one CommandBatch (the consumer's path) ---

    pending_ids: list[tuple[str, MPhone | MEmail, str, str]]

    @precondition(lambda self: self.queue is None)
    @rule()
    def start_batch(self) -> None:
        """The next single-contact changes are held and applied together by ``end_batch``.

        The model is changed as each is queued (one after another), so the batch must answer
        exactly as they would one by one.
        """
        self.queue, self.pending_ids = [], []

    @precondition(lambda self: self.queue is not None)
    @rule()
    def end_batch(self) -> None:
        assert self.queue is not None
        queued, self.queue = self.queue, None
        if not queued:
            return
        commands = [command for command, _ in queued]
        replies = self.send_batch(commands)
        learnt = {command_id: (entry, kind) for command_id, entry, _, kind in self.pending_ids}
        for (command, error), reply in zip(queued, replies, strict=True):
            parsed = self.expect(reply, error)
            if command.command_id in learnt:
                entry, kind = learnt[command.command_id]
                assert parsed.ok and parsed.result is not None, parsed.error
                self.learn_id(parsed.result, entry, kind)
        # Each reply's code was checked; its contact is as it was then (a later command of the
        # batch may have changed it since): the invariants compare the final state.

    # --- rules: bulk ---

    @precondition(lambda self: self.queue is None)
    @rule(
        target=contacts,
        customer=st.sampled_from(s.CUSTOMERS),
        specs=st.lists(s.contact_specs, min_size=1, max_size=5),
    )
    def bulk_create(self, customer: str, specs: list[s.ContactSpec]) -> Any:
        command = c.BulkCreateContacts(
            command_id=self.cid(), customer_id=customer, contacts=[spec.wire() for spec in specs]
        )
        reply = BulkCreateReply.model_validate(self.send(command))
        assert reply.ok, reply.error
        assert [i.index for i in reply.items] == list(range(len(specs)))
        views = iter(reply.contacts)  # each applied item's view of its contact, in item order
        # Known divergence (not fixed): new items are created before items updating a contact by
        # external id, so a number an earlier update gives up is not yet free for a later new item.
        held_at_start = {
            address: m.id for m in self.model.values() if m.customer == customer for address in m.addresses()
        }
        wanted_before: set[Address] = set()
        created: list[str] = []
        errors = {e.index: e.error for e in reply.errors}
        for item, spec in zip(reply.items, specs, strict=True):
            wanted = spec_addresses(spec)
            invalid = spec_invalid(spec)
            target = self.holder(customer, ("external", spec.external_id)) if spec.external_id else None
            mine = target.id if target is not None else None
            if item.status == "failed":
                error = errors[item.index]
                assert error is not None
                if invalid:
                    assert error.code == "INVALID_ARGUMENT", (spec, error)
                else:
                    assert error.code == "ADDRESS_ALREADY_EXISTS", (spec, error)
                    assert (
                        twice(wanted)
                        or self.clash(customer, wanted, mine)
                        or bool(set(wanted) & wanted_before)
                        or any(held_at_start.get(a, mine) != mine for a in wanted)
                    ), f"item {item.index} refused without a clash: {spec} {error}"
            else:
                assert not invalid and not twice(wanted), (spec, item)
                assert not self.clash(customer, wanted, mine), (spec, item, "clash")
                assert item.contact_id is not None
                if item.status == "updated":
                    assert target is not None and item.contact_id == target.id, (spec, item)
                else:
                    assert target is None, (spec, item)
                    assert item.contact_id not in self.model
                wire = next(views)
                assert wire.id == item.contact_id
                m = MContact(item.contact_id, customer, spec.first_name, spec.company, spec.external_id)
                m.tags = list(dict.fromkeys(spec.tags))
                self.model[m.id] = m
                if item.status == "created":
                    created.append(m.id)
                # Entry ids are the service's (kept for an address the contact held before).
                m.phones = [
                    MPhone(p.id, x.e164 or "", pr)
                    for p, (x, pr) in zip(wire.phone_numbers, spec.phones, strict=True)
                ]
                m.emails = [
                    MEmail(e.id, x.address or "", pr)
                    for e, (x, pr) in zip(wire.emails, spec.emails, strict=True)
                ]
            if not invalid:
                wanted_before |= set(wanted)
        return multiple(*created)

    @precondition(lambda self: self.queue is None)
    @rule(customer=st.sampled_from(s.CUSTOMERS), data=st.data())
    def bulk_delete(self, customer: str, data: st.DataObject) -> None:
        ids = data.draw(st.lists(st.sampled_from([*self.model, "no-such-contact"]), min_size=1, max_size=4))
        command = c.BulkDeleteContacts(command_id=self.cid(), customer_id=customer, contact_ids=ids)
        reply = BulkDeleteReply.model_validate(self.send(command))
        unique = list(dict.fromkeys(ids))
        found = [i for i in unique if self.active(customer, i) is not None]
        assert reply.ok and reply.deleted == len(found), reply
        assert reply.not_found == [i for i in unique if i not in found]
        for i in found:
            self.model[i].deleted = True

    # --- rules: replay ---

    @precondition(lambda self: self.queue is None and bool(self.sent))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """An operator replays the topic: the same reply, nothing changed (the invariants see it)."""
        sent = data.draw(st.sampled_from(self.sent))
        again = self.run(handle_command(sent.command, svc=self.svc))
        assert again == sent.reply

    # --- invariants: what reads see ---

    @invariant()
    def reads_agree_with_the_model(self) -> None:
        if self.queue:
            return  # commands held for a batch: the model is ahead of the store until it runs
        for customer in s.CUSTOMERS:
            listed = self.run(
                list_contacts(q.ListContacts(customer_id=customer, page_size=100), svc=self.svc)
            )
            assert listed.ok and listed.next_page_token == ""
            active = {m.id: m for m in self.model.values() if m.customer == customer and not m.deleted}
            assert sorted(x.id for x in listed.result) == sorted(active)
            held: list[Address] = []
            for wire in listed.result:
                self.check_contact(wire, active[wire.id])
                held += [("phone", p.number_e164) for p in wire.phone_numbers]
                held += [("email", e.address) for e in wire.emails]
                held += [("external", wire.external_id)] if wire.external_id else []
            assert not twice(held), f"an address on two contacts of {customer}: {held}"
            for m in self.model.values():
                got = self.run(get_contact(q.GetContact(customer_id=customer, contact_id=m.id), svc=self.svc))
                if m.customer == customer and not m.deleted:
                    assert got.ok and got.result is not None
                    self.check_contact(got.result, m)
                else:
                    assert got.error is not None and got.error.code == "CONTACT_NOT_FOUND", got
            for phone in {p.e164 for p in s.VALID_PHONES}:
                self.check_lookup(
                    customer, ("phone", phone or ""), q.LookupContact(customer_id=customer, phone=phone)
                )
            for email in {e.address for e in s.VALID_EMAILS}:
                self.check_lookup(
                    customer, ("email", email or ""), q.LookupContact(customer_id=customer, email=email)
                )
            batch = self.run(
                batch_lookup_contacts(
                    q.BatchLookupContacts(customer_id=customer, phones=[p.raw for p in s.VALID_PHONES]),
                    svc=self.svc,
                )
            )
            for asked, match in zip(s.VALID_PHONES, batch.result, strict=True):
                owner = self.holder(customer, ("phone", asked.e164 or ""))
                assert (match.result.id if match.result else None) == (owner.id if owner else None)

    def check_lookup(self, customer: str, address: Address, query: q.LookupContact) -> None:
        found = self.run(lookup_contact(query, svc=self.svc))
        assert isinstance(found, ContactReply)
        owner = self.holder(customer, address)
        if owner is None:
            assert found.error is not None and found.error.code == "CONTACT_NOT_FOUND", (address, found)
        else:
            assert found.result is not None, (address, found.error)
            assert found.result.customer_id == customer
            self.check_contact(found.result, owner)


# The same examples on every run (CI must not turn red on a new draw); explore more with
# STATE_MACHINE_EXAMPLES=1000 STATE_MACHINE_RANDOM=1.
ContactMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("STATE_MACHINE_EXAMPLES", "120")),
    derandomize=not os.environ.get("STATE_MACHINE_RANDOM"),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestContactMachine = ContactMachine.TestCase


# --- regressions for what the machine (and the hostile-input test) found ---


async def test_bulk_item_repeating_an_external_id_keeps_its_number_before_a_later_new_item() -> None:
    """Item 1 repeats item 0's external id (applied after the new items) and wants a number that
    the later new item 2 wants too: the earlier item gets it, as one after another would."""
    svc = make_services()
    bulk = c.BulkCreateContacts(
        command_id="bulk",
        customer_id=A,
        contacts=[
            {"first_name": "first", "external_id": "crm-2"},
            {"first_name": "again", "external_id": "crm-2", "phone_numbers": [{"number": "+15550100003"}]},
            {"first_name": "new", "phone_numbers": [{"number": "+15550100003"}]},
        ],
    )
    reply = BulkCreateReply.model_validate(await handle_command(bulk, svc=svc))
    assert [(i.index, i.status) for i in reply.items] == [(0, "created"), (1, "updated"), (2, "failed")]
    assert [(e.index, e.error.code if e.error else None) for e in reply.errors] == [
        (2, "ADDRESS_ALREADY_EXISTS")
    ]


async def test_a_command_on_no_such_contact_leaves_its_number_to_the_next_command_of_the_batch() -> None:
    """The batch claims addresses ahead; a command that ends without using its claim (no such
    contact) must not make a later command of the batch wanting the number fail."""
    svc = make_services()
    created = await handle_command(
        c.CreateContact.model_validate(
            {"command_id": "c1", "customer_id": A, "contact": {"first_name": "x"}}
        ),
        svc=svc,
    )
    add = {"customer_id": A, "phone_number": {"number": "+15550100002"}}
    commands = [
        c.AddPhoneNumber.model_validate({**add, "command_id": "a1", "contact_id": "no-such-contact"}),
        c.AddPhoneNumber.model_validate({**add, "command_id": "a2", "contact_id": created["result"]["id"]}),
    ]
    batch = CommandBatch(svc)
    batch.prefetch(commands)
    tasks = [await batch.start(command) for command in commands]
    await batch.flush()
    await batch.close()
    first, second = (ContactReply.model_validate(task.result()) for task in tasks)
    assert first.error is not None and first.error.code == "CONTACT_NOT_FOUND"
    assert second.ok, second.error
    found = await lookup_contact(q.LookupContact(customer_id=A, phone="+15550100002"), svc=svc)
    assert isinstance(found, ContactReply) and found.result is not None
    assert found.result.id == created["result"]["id"]


async def test_forged_page_tokens_are_invalid_arguments_not_failures() -> None:
    """A token whose time has no zone, or names an instant outside what UTC can hold (year 1 at
    +05:00): the real store's list read raised OverflowError on it, retried and never answered."""
    for stamp in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "2026-01-01T00:00:00"):
        token = base64.urlsafe_b64encode(json.dumps([stamp, "x"]).encode()).decode()
        reply = await list_contacts(q.ListContacts(customer_id=A, page_token=token), svc=make_services())
        assert reply.error is not None and (reply.error.code, reply.error.field) == (
            "INVALID_ARGUMENT",
            "page_token",
        ), stamp


def test_a_body_nested_too_deeply_is_malformed_input() -> None:
    """1000 levels of nesting: FastStream's json.loads raises RecursionError, which was retried
    and parked as PROCESSING_FAILED, the requester never answered."""
    with pytest.raises(RecursionError) as raised:
        json.loads("[" * 5000 + "]" * 5000)
    error = input_error(raised.value)
    assert error is not None and error.code == "MALFORMED_MESSAGE"
