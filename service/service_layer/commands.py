"""Handlers of the single-contact commands: each returns the command's Outcome.

Each is safe to run again for the same command: ids are derived from the command id, and the
outcome written with the contact is returned as-is when the command turns out to be applied.
"""

from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, TypeVar

from contracts import commands as c
from contracts.events import ContactCreated, ContactDeleted, ContactUpdated
from contracts.models import format_timestamp
from contracts.replies import ContactReply
from service.domain.errors import ContactNotFound, DomainError
from service.domain.model import Address, Contact
from service.domain.normalize import normalize_email, normalize_phone
from service.service_layer import mapping
from service.service_layer.addresses import claim_addresses, release_addresses
from service.service_layer.context import Services
from service.service_layer.ports import JsonDict, Outcome


class Origin(Protocol):
    """What caused a change, as events name it: a command, a bulk item or a CRM sync message."""

    @property
    def command_id(self) -> str: ...
    @property
    def type(self) -> str: ...


class ConcurrentChange(Exception):
    """Someone else changed the contact between our read and our write: read again and retry."""


MAX_ATTEMPTS: Final = 5
T = TypeVar("T")


async def retrying(attempt: Callable[[int], Awaitable[T]], *, gave_up: str) -> T:
    """``attempt(0)``, ``attempt(1)``, ... until one is not lost to a ConcurrentChange; after
    ``MAX_ATTEMPTS`` lost ones, ConcurrentChange(``gave_up``)."""
    for n in range(MAX_ATTEMPTS):
        try:
            return await attempt(n)
        except ConcurrentChange:
            continue
    raise ConcurrentChange(gave_up)


# --- outcomes and events ---


def failed(command: c.ContactCommand, exc: DomainError) -> Outcome:
    reply = ContactReply(ok=False, error=mapping.to_error(exc))
    return _outcome(command, reply.model_dump(mode="json"), [])


def _outcome(command: c.ContactCommand, reply: JsonDict, events: list[JsonDict]) -> Outcome:
    return Outcome(
        customer_id=command.customer_id,
        command_id=command.command_id,
        command_type=command.type,
        reply=reply,
        events=events,
    )


def change_event(
    command: Origin,
    contact: Contact,
    changed: list[str],
    *,
    created: bool = False,
    own: JsonDict | None = None,
) -> JsonDict:
    """The contact-changed event in wire form; ``own`` is the contact's wire form, when already built.

    Built as JSON directly (see ``mapping.contact_json``); tests/unit/test_mapping.py holds it
    equal to the contracts' event models.
    """
    kind = ContactCreated if created else ContactDeleted if contact.is_deleted else ContactUpdated
    return {
        "event_id": mapping.derived_id("event", contact.customer_id, contact.id, str(contact.version)),
        "occurred_at": format_timestamp(contact.tm_update or contact.tm_create),
        "customer_id": contact.customer_id,
        "contact_id": contact.id,
        "version": contact.version,
        "changed_fields": list(changed),
        "contact": own if own is not None else mapping.contact_json(contact),
        "cause": {"command_id": command.command_id, "command_type": command.type},
        "type": _EVENT_TYPES[kind],
    }


_EVENT_TYPES = {
    kind: kind.model_fields["type"].default for kind in (ContactCreated, ContactUpdated, ContactDeleted)
}


def created_event(origin: Origin, contact: Contact, own: JsonDict) -> JsonDict:
    """``contact.created``, naming every field the new contact sets (from its wire form ``own``)."""
    return change_event(origin, contact, mapping.set_fields(own), created=True, own=own)


def changed_outcome(command: c.ContactCommand, contact: Contact, changed: list[str]) -> Outcome:
    own = mapping.contact_json(contact)
    events = [change_event(command, contact, changed, own=own)] if changed else []
    return _outcome(command, _contact_reply(own), events)


def created_outcome(command: c.ContactCommand, contact: Contact) -> Outcome:
    own = mapping.contact_json(contact)
    return _outcome(command, _contact_reply(own), [created_event(command, contact, own)])


def _contact_reply(own: JsonDict) -> JsonDict:
    return {**ContactReply().model_dump(mode="json"), "result": own}


# --- create ---


def build_contact(
    contact_input: Any, *, contact_id: str, customer_id: str, seed: tuple[str, ...], svc: Services
) -> tuple[Contact, list[tuple[Address, str]]]:
    """A new domain contact from a validated ContactInput, with the (address, field) pairs to claim."""
    phones = [
        mapping.new_phone(p, default_region=svc.default_region, field=f"contact.phone_numbers[{i}].number")
        for i, p in enumerate(contact_input.phone_numbers)
    ]
    emails = [
        mapping.new_email(e, field=f"contact.emails[{i}].address") for i, e in enumerate(contact_input.emails)
    ]
    try:
        contact = Contact.create(
            id=contact_id,
            customer_id=customer_id,
            fields=mapping.scalar_fields(contact_input),
            phone_numbers=phones,
            emails=emails,
            tag_ids=contact_input.tag_ids,
            now=svc.clock.now(),
            new_id=mapping.DerivedIds(*seed),
        )
    except DomainError as exc:
        # The domain names fields within the contact (``emails[1].address``); the message has
        # them under ``contact``, like every other field of this command.
        if exc.field and not exc.field.startswith("contact."):
            exc.field = f"contact.{exc.field}"
        raise
    wanted = [
        (Address("phone", p.number_e164), f"contact.phone_numbers[{i}].number") for i, p in enumerate(phones)
    ]
    wanted += [(Address("email", e.address), f"contact.emails[{i}].address") for i, e in enumerate(emails)]
    if contact.external_id:
        wanted.append((Address("external", contact.external_id), "contact.external_id"))
    return contact, wanted


async def create_contact(command: c.CreateContact, svc: Services) -> Outcome:
    contact_id = mapping.derived_id("contact", command.customer_id, command.command_id)
    existing = await svc.contacts.get(customer_id=command.customer_id, contact_id=contact_id)
    if existing is not None:
        # Applied before the log entry was written: answer from the outcome stored with it.
        if (applied := existing.outcome_of(command.command_id)) is not None:
            return applied
        return changed_outcome(command, existing.contact, [])
    try:
        contact, wanted = build_contact(
            command.contact,
            contact_id=contact_id,
            customer_id=command.customer_id,
            seed=(command.customer_id, command.command_id),
            svc=svc,
        )
        await claim_addresses(wanted, customer_id=command.customer_id, contact_id=contact_id, svc=svc)
    except DomainError as exc:
        return failed(command, exc)
    outcome = created_outcome(command, contact)
    if not await svc.contacts.insert(contact=contact, outcome=outcome):
        raise ConcurrentChange(contact_id)
    return outcome


# --- changes to an existing contact ---

Mutation = Callable[[Contact], list[str]]


async def _mutate(command: Any, svc: Services, mutation: Mutation, *, deleting: bool = False) -> Outcome:
    stored = await svc.contacts.get(customer_id=command.customer_id, contact_id=command.contact_id)
    if stored is not None and (applied := stored.outcome_of(command.command_id)) is not None:
        return applied
    if stored is None or (stored.contact.is_deleted and not deleting):
        return failed(command, ContactNotFound(f"contact {command.contact_id} not found", field="contact_id"))
    contact = stored.contact
    before_version, before_addresses = contact.version, contact.addresses()
    try:
        changed = mutation(contact)
        added = contact.addresses() - before_addresses
        await claim_addresses(
            [(a, _field_of(command, a)) for a in sorted(added, key=lambda a: (a.kind, a.value))],
            customer_id=command.customer_id,
            contact_id=contact.id,
            svc=svc,
        )
    except DomainError as exc:
        return failed(command, exc)
    if not changed:
        return changed_outcome(command, contact, [])
    contact.touch(svc.clock.now())
    outcome = changed_outcome(command, contact, changed)
    if not await svc.contacts.replace(contact=contact, expected_version=before_version, outcome=outcome):
        raise ConcurrentChange(contact.id)
    await release_addresses(
        before_addresses - contact.addresses(),
        customer_id=command.customer_id,
        contact_id=contact.id,
        svc=svc,
    )
    return outcome


def _field_of(command: Any, address: Address) -> str:
    if address.kind == "external":
        return "changes.external_id"
    if isinstance(command, c.AddPhoneNumber):
        return "phone_number.number"
    if isinstance(command, c.AddEmail):
        return "email.address"
    return "changes.number" if address.kind == "phone" else "changes.address"


async def update_contact(command: c.UpdateContact, svc: Services) -> Outcome:
    changes = mapping.scalar_fields(command.changes)
    return await _mutate(command, svc, lambda contact: contact.update_fields(changes))


async def delete_contact(command: c.DeleteContact, svc: Services) -> Outcome:
    now = svc.clock.now()
    return await _mutate(command, svc, lambda contact: contact.delete(now), deleting=True)


async def add_phone_number(command: c.AddPhoneNumber, svc: Services) -> Outcome:
    now = svc.clock.now()

    def mutation(contact: Contact) -> list[str]:
        phone = mapping.new_phone(
            command.phone_number, default_region=svc.default_region, field="phone_number.number"
        )
        contact.add_phone_number(
            phone, now=now, new_id=mapping.DerivedIds(command.customer_id, command.command_id)
        )
        return ["phone_numbers"]

    return await _mutate(command, svc, mutation)


async def update_phone_number(command: c.UpdatePhoneNumber, svc: Services) -> Outcome:
    changes = command.changes

    def mutation(contact: Contact) -> list[str]:
        number = None
        if changes.number is not None:
            e164, ext = normalize_phone(
                changes.number,
                region=changes.region,
                default_region=svc.default_region,
                field="changes.number",
            )
            number = (changes.number, e164, ext)
        return contact.update_phone_number(
            command.phone_number_id,
            number=number,
            type=changes.type.value if changes.type is not None else None,
            is_primary=changes.is_primary,
        )

    return await _mutate(command, svc, mutation)


async def remove_phone_number(command: c.RemovePhoneNumber, svc: Services) -> Outcome:
    def mutation(contact: Contact) -> list[str]:
        contact.remove_phone_number(command.phone_number_id)
        return ["phone_numbers"]

    return await _mutate(command, svc, mutation)


async def add_email(command: c.AddEmail, svc: Services) -> Outcome:
    now = svc.clock.now()

    def mutation(contact: Contact) -> list[str]:
        email = mapping.new_email(command.email, field="email.address")
        contact.add_email(email, now=now, new_id=mapping.DerivedIds(command.customer_id, command.command_id))
        return ["emails"]

    return await _mutate(command, svc, mutation)


async def update_email(command: c.UpdateEmail, svc: Services) -> Outcome:
    changes = command.changes

    def mutation(contact: Contact) -> list[str]:
        address = normalize_email(changes.address, field="changes.address") if changes.address else None
        return contact.update_email(
            command.email_id,
            address=address,
            type=changes.type.value if changes.type is not None else None,
            is_primary=changes.is_primary,
        )

    return await _mutate(command, svc, mutation)


async def remove_email(command: c.RemoveEmail, svc: Services) -> Outcome:
    def mutation(contact: Contact) -> list[str]:
        contact.remove_email(command.email_id)
        return ["emails"]

    return await _mutate(command, svc, mutation)


async def add_tag(command: c.AddTag, svc: Services) -> Outcome:
    return await _mutate(command, svc, lambda contact: contact.add_tag(command.tag_id))


async def remove_tag(command: c.RemoveTag, svc: Services) -> Outcome:
    return await _mutate(command, svc, lambda contact: contact.remove_tag(command.tag_id))
