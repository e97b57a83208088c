"""Upserting items by external id, and deleting by id: what bulk commands and CRM sync share.

One item's failure never stops the others. New contacts are created in bulk (``create_many``),
the rest are upserted one by one (``upsert_each``), each planned, then written.
"""

import asyncio
import dataclasses
from collections.abc import Callable

from service.domain.errors import DomainError
from service.domain.model import Address
from service.service_layer import mapping
from service.service_layer.addresses import Footprint
from service.service_layer.commands import Origin, retrying
from service.service_layer.context import Services
from service.service_layer.items import ItemResult, ManyOutcome, NewItem, failed_item
from service.service_layer.planning import (
    Deletion,
    Holder,
    build_new,
    holders,
    holding_contact,
    item_footprint,
    plan_delete,
    plan_upsert,
    reserved_by,
    split_repeats,
)
from service.service_layer.ports import JsonDict, StoredContact
from service.service_layer.writing import write_change, write_deletion, write_new

CHUNK = 250
"""Items of a bulk or sync batch built and written together; the next chunk is built meanwhile."""


async def upsert_many(customer_id: str, items: list[NewItem], *, svc: Services) -> ManyOutcome:
    """Upsert many contacts by external_id: the new ones in bulk, the rest one by one."""
    out, rest = await create_many(customer_id, items, svc=svc)
    await upsert_each(customer_id, rest, out=out, svc=svc)
    return out


async def create_many(
    customer_id: str, items: list[NewItem], *, svc: Services
) -> tuple[ManyOutcome, list[NewItem]]:
    """Create the items that are new to the service in bulk; return the rest, in item order.

    Two round trips per chunk of ``CHUNK`` items: the addresses claimed in one insert, the
    contacts written in one insert. Chunks are built in item order (an address wanted twice goes
    to the earlier item) and each is written while the next is built, so the service's CPU and
    the store's overlap. An item is new when it has no external id or when this insert took its
    external id's claim. Items whose external id was claimed before (by a contact, by an earlier
    delivery of the same item, or released) and items repeating an external id of an earlier
    item are returned, for ``upsert_each``.
    """
    firsts, repeats = split_repeats(items)
    out = ManyOutcome()
    claimed_before: list[NewItem] = []
    reserved = reserved_by(repeats, svc=svc)
    for part, claimed in await _create_in_chunks(customer_id, firsts, reserved=reserved, svc=svc):
        out.results |= part.results
        out.events += part.events
        claimed_before += claimed
    return out, sorted(claimed_before + repeats, key=lambda i: i.position)


async def _create_in_chunks(
    customer_id: str, items: list[NewItem], *, reserved: list[tuple[int, set[Address]]], svc: Services
) -> list[tuple[ManyOutcome, list[NewItem]]]:
    """Per chunk, in order: its outcome and the items whose external id was claimed before."""
    seen: set[Address] = set()
    parts: list[ManyOutcome] = []
    writes: list[asyncio.Task[list[NewItem]]] = []
    try:
        async with asyncio.TaskGroup() as group:
            for start in range(0, len(items), CHUNK):
                part = ManyOutcome()
                built = build_new(
                    customer_id, items[start : start + CHUNK], out=part, seen=seen, svc=svc, reserved=reserved
                )
                writes.append(group.create_task(write_new(customer_id, built, out=part, svc=svc)))
                parts.append(part)
                await asyncio.sleep(0)  # that chunk's first write goes out before the next is built
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None  # as one chunk raised it: the failure rules need its type
    return [(part, write.result()) for part, write in zip(parts, writes, strict=True)]


Republish = Callable[[StoredContact], list[JsonDict]]
"""The events of a contact's last change that may not have been published yet (sent again before
the next change's): the caller knows which are."""


def _nothing(_: StoredContact) -> list[JsonDict]:
    return []


async def upsert_each(
    customer_id: str,
    items: list[NewItem],
    *,
    out: ManyOutcome,
    svc: Services,
    republish: Republish = _nothing,
) -> None:
    """Upsert items in order: update the contact holding the external id, or create.

    The contacts holding the items' external ids are read together first. Items then start one
    after another, each while earlier ones still write, unless its addresses clash with an
    earlier one's (``Footprint``): so each gets the answer it would get one after another.
    """
    known = await holders(customer_id, items, svc=svc)
    running: list[tuple[asyncio.Task[tuple[ItemResult, list[JsonDict]]], Footprint]] = []
    for item in items:
        holder = known.get(item.position)
        mine = item_footprint(item, holder, svc=svc)
        before = [task for task, theirs in running if mine.waits_for(theirs)]
        if before:
            await asyncio.wait(before)
        task = asyncio.create_task(_upsert(customer_id, item, holder, svc=svc, republish=republish))
        running.append((task, mine))
    done = await asyncio.gather(*(task for task, _ in running), return_exceptions=True)
    for item, result in zip(items, done, strict=True):
        if isinstance(result, BaseException):
            raise result
        out.results[item.position], events = result
        out.events += events


async def _upsert(
    customer_id: str, item: NewItem, holder: Holder | None, *, svc: Services, republish: Republish
) -> tuple[ItemResult, list[JsonDict]]:
    return await retrying(
        lambda attempt: upsert_by_external_id(
            customer_id=customer_id,
            item=item,
            svc=svc,
            holder=holder if attempt == 0 else None,  # after a lost race, read again
            republish=republish,
        ),
        gave_up=f"item {item.origin.command_id}",
    )


async def upsert_by_external_id(
    *,
    customer_id: str,
    item: NewItem,
    svc: Services,
    holder: Holder | None = None,
    republish: Republish = _nothing,
) -> tuple[ItemResult, list[JsonDict]]:
    """Create the contact, or make the active contact with its external_id look like it.

    ``holder``: the contact that held the external id when read before (else it is read here).
    Raises ConcurrentChange when someone else wrote the contact first.
    """
    stored = await holding_contact(customer_id, item.contact_input.external_id, holder, svc=svc)
    if stored is None:
        new_id = mapping.derived_id("contact", customer_id, item.origin.command_id)
        stored = await svc.contacts.get(customer_id=customer_id, contact_id=new_id)
    if stored is not None and (applied := stored.outcome_of(item.origin.command_id)) is not None:
        return ItemResult.from_json(applied.reply), applied.events
    earlier = republish(stored) if stored is not None else []
    try:
        change = plan_upsert(item, stored, customer_id=customer_id, svc=svc)
    except DomainError as exc:
        return failed_item(item, exc), earlier
    return await write_change(change, item, customer_id=customer_id, svc=svc, earlier=earlier)


async def delete_by_id(
    *,
    origin: Origin,
    customer_id: str,
    contact_id: str,
    item_command_id: str,
    svc: Services,
    republish: Republish = _nothing,
) -> list[JsonDict] | None:
    """Soft-delete one contact; its events (again, when this item did it before), or None if there
    is no active contact to delete."""

    async def attempt(_: int) -> list[JsonDict] | None:
        found = await svc.contacts.get(customer_id=customer_id, contact_id=contact_id)
        planned = plan_delete(
            found, origin=origin, customer_id=customer_id, item_command_id=item_command_id, svc=svc
        )
        if not isinstance(planned, Deletion):
            return planned
        if found is not None and (earlier := republish(found)):
            # Stored with the deletion too: a redelivery of it publishes them again.
            outcome = dataclasses.replace(planned.outcome, events=[*earlier, *planned.outcome.events])
            planned = dataclasses.replace(planned, outcome=outcome)
        await write_deletion(planned, customer_id=customer_id, svc=svc)
        return planned.outcome.events

    return await retrying(attempt, gave_up=contact_id)
