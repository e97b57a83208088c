"""Bulk create (create or update by external_id) and bulk delete, with a result per item.

One bad item fails alone, reported with its index and reason; the rest are still applied. Each
item is applied like a single command whose id is ``<command_id>#<index>``, so a redelivered
bulk command re-applies nothing and answers every item as before.
"""

from pydantic import ValidationError

from contracts import commands as c
from contracts.errors import Error, ErrorCode
from contracts.models import ContactInput
from contracts.replies import BulkCreateReply, BulkDeleteReply, BulkItemResult
from service.domain.errors import DomainError
from service.domain.model import Address
from service.service_layer import mapping
from service.service_layer.addresses import claim_addresses, release_addresses, resolve
from service.service_layer.commands import (
    ConcurrentChange,
    Origin,
    build_contact,
    change_event,
    set_fields,
)
from service.service_layer.context import Services
from service.service_layer.ports import JsonDict, Outcome


def validation_error(exc: ValidationError, *, prefix: str) -> Error:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return Error(
        code=ErrorCode.INVALID_ARGUMENT,
        message=first["msg"],
        field=f"{prefix}.{loc}" if loc else prefix,
    )


async def bulk_create_contacts(command: c.BulkCreateContacts, svc: Services) -> Outcome:
    items: list[BulkItemResult] = []
    events: list[JsonDict] = []
    for index, raw in enumerate(command.contacts):
        try:
            contact_input = ContactInput.model_validate(raw)
        except ValidationError as exc:
            items.append(
                BulkItemResult(
                    index=index,
                    status="failed",
                    error=validation_error(exc, prefix=f"contacts[{index}]"),
                )
            )
            continue
        for _ in range(5):
            try:
                item, item_events = await _upsert_item(command, index, contact_input, svc)
                break
            except ConcurrentChange:
                continue
        else:
            raise ConcurrentChange(f"bulk item {index} of {command.command_id}")
        items.append(item)
        events.extend(item_events)
    reply = BulkCreateReply(
        created=sum(i.status == "created" for i in items),
        updated=sum(i.status == "updated" for i in items),
        failed=sum(i.status == "failed" for i in items),
        contacts=[i.contact for i in items if i.contact is not None],
        errors=[i for i in items if i.status == "failed"],
        items=items,
    )
    return Outcome(
        customer_id=command.customer_id,
        command_id=command.command_id,
        command_type=command.type,
        reply=reply.model_dump(mode="json"),
        events=events,
    )


async def _upsert_item(
    command: c.BulkCreateContacts, index: int, contact_input: ContactInput, svc: Services
) -> tuple[BulkItemResult, list[JsonDict]]:
    return await upsert_by_external_id(
        origin=command,
        customer_id=command.customer_id,
        item_command_id=f"{command.command_id}#{index}",
        index=index,
        prefix=f"contacts[{index}]",
        contact_input=contact_input,
        svc=svc,
    )


async def upsert_by_external_id(
    *,
    origin: Origin,
    customer_id: str,
    item_command_id: str,
    index: int,
    prefix: str,
    contact_input: ContactInput,
    svc: Services,
) -> tuple[BulkItemResult, list[JsonDict]]:
    """Create the contact, or make the active contact with its external_id look like it."""
    new_id = mapping.derived_id("contact", customer_id, item_command_id)
    target = None
    if contact_input.external_id:
        target = await resolve(
            Address("external", contact_input.external_id), customer_id=customer_id, svc=svc
        )
    stored = await svc.contacts.get(customer_id=customer_id, contact_id=target.id if target else new_id)
    if (
        stored is not None
        and stored.last_outcome is not None
        and stored.last_outcome.command_id == item_command_id
    ):
        return BulkItemResult.model_validate(stored.last_outcome.reply), stored.last_outcome.events
    try:
        if stored is None or stored.contact.is_deleted:
            contact, wanted = build_contact(
                contact_input,
                contact_id=new_id,
                customer_id=customer_id,
                seed=(customer_id, item_command_id),
                svc=svc,
            )
            await claim_addresses(
                [(a, f.replace("contact.", f"{prefix}.", 1)) for a, f in wanted],
                customer_id=customer_id,
                contact_id=new_id,
                svc=svc,
            )
            status, changed, before_version, before = "created", set_fields(contact), 0, set()
        else:
            contact = stored.contact
            before_version, before = contact.version, contact.addresses()
            _, wanted = build_contact(
                contact_input, contact_id=contact.id, customer_id=customer_id, seed=(), svc=svc
            )
            changed = contact.replace_state(
                fields=mapping.scalar_fields(contact_input),
                phone_numbers=[
                    mapping.new_phone(p, default_region=svc.default_region, field="")
                    for p in contact_input.phone_numbers
                ],
                emails=[mapping.new_email(e, field="") for e in contact_input.emails],
                tag_ids=contact_input.tag_ids,
                now=svc.clock.now(),
                new_id=mapping.DerivedIds(customer_id, item_command_id),
            )
            await claim_addresses(
                [(a, f.replace("contact.", f"{prefix}.", 1)) for a, f in wanted if a not in before],
                customer_id=customer_id,
                contact_id=contact.id,
                svc=svc,
            )
            status = "updated"
    except DomainError as exc:
        error = mapping.to_error(exc)
        if error.field and not error.field.startswith(prefix):
            error = error.model_copy(update={"field": f"{prefix}.{error.field.removeprefix('contact.')}"})
        return BulkItemResult(index=index, status="failed", error=error), []
    if status == "updated":
        if not changed:
            return BulkItemResult(index=index, status="updated", contact=mapping.contact_to_wire(contact)), []
        contact.touch(svc.clock.now())
    item = BulkItemResult(index=index, status=status, contact=mapping.contact_to_wire(contact))  # type: ignore[arg-type]
    item_events = [change_event(origin, contact, changed, created=status == "created")]
    outcome = Outcome(
        customer_id=customer_id,
        command_id=item_command_id,
        command_type=origin.type,
        reply=item.model_dump(mode="json"),
        events=item_events,
    )
    written = (
        await svc.contacts.insert(contact=contact, outcome=outcome)
        if status == "created"
        else await svc.contacts.replace(contact=contact, expected_version=before_version, outcome=outcome)
    )
    if not written:
        raise ConcurrentChange(contact.id)
    await release_addresses(
        before - contact.addresses(), customer_id=customer_id, contact_id=contact.id, svc=svc
    )
    return item, item_events


async def bulk_delete_contacts(command: c.BulkDeleteContacts, svc: Services) -> Outcome:
    events: list[JsonDict] = []
    deleted, not_found = 0, []
    customer_id = command.customer_id
    for contact_id in dict.fromkeys(command.contact_ids):
        item_events = await delete_by_id(
            origin=command,
            customer_id=customer_id,
            contact_id=contact_id,
            item_command_id=f"{command.command_id}#{contact_id}",
            svc=svc,
        )
        if item_events is None:
            not_found.append(contact_id)
        else:
            deleted += 1
            events.extend(item_events)
    reply = BulkDeleteReply(deleted=deleted, not_found=not_found)
    return Outcome(customer_id, command.command_id, command.type, reply.model_dump(mode="json"), events)


async def delete_by_id(
    *, origin: Origin, customer_id: str, contact_id: str, item_command_id: str, svc: Services
) -> list[JsonDict] | None:
    """Soft-delete one contact; its events (again, when this item did it before), or None if there
    is no active contact to delete."""
    for _ in range(5):
        stored = await svc.contacts.get(customer_id=customer_id, contact_id=contact_id)
        if stored is None:
            return None
        if stored.last_outcome is not None and stored.last_outcome.command_id == item_command_id:
            return stored.last_outcome.events
        contact = stored.contact
        if contact.is_deleted:
            return None
        before_version, before = contact.version, contact.addresses()
        contact.delete(svc.clock.now())
        contact.touch(svc.clock.now())
        item_events = [change_event(origin, contact, ["tm_delete"])]
        outcome = Outcome(customer_id, item_command_id, origin.type, {}, item_events)
        if await svc.contacts.replace(contact=contact, expected_version=before_version, outcome=outcome):
            await release_addresses(before, customer_id=customer_id, contact_id=contact_id, svc=svc)
            return item_events
    raise ConcurrentChange(contact_id)
