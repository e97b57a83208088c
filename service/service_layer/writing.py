"""Writing planned items: claiming their addresses, inserting or replacing their contacts (each with
the outcome a redelivery answers), and releasing the addresses they gave up."""

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from service.domain.errors import DomainError
from service.domain.model import Address
from service.service_layer import mapping
from service.service_layer.addresses import claim_addresses, release_addresses, release_of
from service.service_layer.commands import ConcurrentChange, change_event, created_event
from service.service_layer.context import Services
from service.service_layer.items import ItemResult, ManyOutcome, NewItem, failed_item
from service.service_layer.planning import Built, Change, Deletion
from service.service_layer.ports import Claim, JsonDict, Outcome


async def write_new(
    customer_id: str, built: list[Built], *, out: ManyOutcome, svc: Services
) -> list[NewItem]:
    """Claim the built contacts' addresses and write them; returns the items whose external id
    was claimed before.

    External ids are claimed first (one insert): new contacts (a CRM export) cost no reads, and
    an item whose external id was claimed before (an update) claims nothing more here.
    """
    now = svc.clock.now()
    externals = [(a, b.contact.id) for b in built for a, _ in b.wanted if a.kind == "external"]
    taken = await svc.addresses.claim_many(customer_id=customer_id, wanted=externals, now=now)
    old = {b.item.position for b in built if any(a.kind == "external" and a in taken for a, _ in b.wanted)}
    claimed_before = [
        dataclasses.replace(b.item, claim=taken[a])
        for b in built
        if b.item.position in old
        for a, _ in b.wanted
        if a.kind == "external"
    ]
    fresh = [b for b in built if b.item.position not in old]
    ready = await _claim_the_rest(customer_id, fresh, taken=taken, now=now, out=out, svc=svc)
    await _insert(customer_id, ready, out=out, svc=svc)
    return claimed_before


async def _claim_the_rest(
    customer_id: str,
    built: list[Built],
    *,
    taken: dict[Address, Claim],
    now: datetime,
    out: ManyOutcome,
    svc: Services,
) -> list[Built]:
    """Claim the built contacts' other addresses (one insert); returns those that hold them all.

    ``taken``: the claims found taken so far. A contact whose address stays taken fails, giving
    back what this insert claimed for it.
    """
    others = [(a, b.contact.id) for b in built for a, _ in b.wanted if a.kind != "external"]
    taken |= await svc.addresses.claim_many(customer_id=customer_id, wanted=others, now=now)
    ready: list[Built] = []
    for b in built:
        contested = [(a, f) for a, f in b.wanted if a in taken and taken[a].contact_id != b.contact.id]
        if contested:
            try:
                # One by one: a claim left by a contact that never got written is taken over.
                await claim_addresses(contested, customer_id=customer_id, contact_id=b.contact.id, svc=svc)
            except DomainError as exc:
                mine = {a for a, _ in b.wanted if a not in taken}
                await release_addresses(mine, customer_id=customer_id, contact_id=b.contact.id, svc=svc)
                out.results[b.item.position] = failed_item(b.item, exc)
                continue
        ready.append(b)
    return ready


async def _insert(customer_id: str, ready: list[Built], *, out: ManyOutcome, svc: Services) -> None:
    """Insert the contacts (one insert), each with its outcome; answer each item."""
    outcomes: dict[str, Outcome] = {}
    for b in ready:
        own = mapping.contact_json(b.contact)
        event = created_event(b.item.origin, b.contact, own)
        # Stored with the contact: what a redelivery answers and re-publishes.
        reply = ItemResult(b.item.position, "created", own).to_json()
        outcomes[b.contact.id] = Outcome(
            customer_id, b.item.origin.command_id, b.item.origin.type, reply, [event]
        )
    existing = await svc.contacts.insert_many(items=[(b.contact, outcomes[b.contact.id]) for b in ready])
    if existing:
        # Written by an earlier delivery: answer and publish what that delivery stored.
        stored = await svc.contacts.get_many(customer_id=customer_id, contact_ids=sorted(existing))
        for contact_id, found in stored.items():
            if found.last_outcome is not None:
                outcomes[contact_id] = found.last_outcome
    for b in ready:
        outcome = outcomes[b.contact.id]
        out.results[b.item.position] = ItemResult.from_json(outcome.reply, index=b.item.position)
        out.events += outcome.events


async def write_change(
    change: Change,
    item: NewItem,
    *,
    customer_id: str,
    svc: Services,
    earlier: Sequence[JsonDict] = (),
) -> tuple[ItemResult, list[JsonDict]]:
    """Claim what ``change`` wants, write it (compare-and-set for an update), release what it gave up.

    ``earlier``: events of the contact's previous change to publish again, first; stored with this
    change's, so a redelivery of this change publishes them too.
    Raises ConcurrentChange when someone else wrote the contact first.
    """
    contact = change.contact
    try:
        await claim_addresses(change.wanted, customer_id=customer_id, contact_id=contact.id, svc=svc)
    except DomainError as exc:
        return failed_item(item, exc), list(earlier)
    if change.status == "updated":
        if not change.changed:
            return ItemResult(item.position, "updated", mapping.contact_json(contact)), list(earlier)
        contact.touch(svc.clock.now())
    own = mapping.contact_json(contact)
    result = ItemResult(item.position, change.status, own)
    events = [
        *earlier,
        created_event(item.origin, contact, own)
        if change.status == "created"
        else change_event(item.origin, contact, change.changed, own=own),
    ]
    outcome = Outcome(customer_id, item.origin.command_id, item.origin.type, result.to_json(), events)
    written = (
        await svc.contacts.insert(contact=contact, outcome=outcome)
        if change.status == "created"
        else await svc.contacts.replace(
            contact=contact, expected_version=change.before_version, outcome=outcome
        )
    )
    if not written:
        raise ConcurrentChange(contact.id)
    await release_addresses(
        change.before - contact.addresses(), customer_id=customer_id, contact_id=contact.id, svc=svc
    )
    return result, events


async def write_deletion(deletion: Deletion, *, customer_id: str, svc: Services) -> None:
    """Write one deletion, then release its addresses; ConcurrentChange when someone else wrote first."""
    contact = deletion.contact
    if not await svc.contacts.replace(
        contact=contact, expected_version=deletion.expected_version, outcome=deletion.outcome
    ):
        raise ConcurrentChange(contact.id)
    await release_addresses(deletion.released, customer_id=customer_id, contact_id=contact.id, svc=svc)


async def write_deletions(deletions: list[Deletion], *, customer_id: str, svc: Services) -> set[str]:
    """Write the deletions (one round trip), then release their addresses (one more); returns the
    ids of the contacts someone else changed first: not written, nothing released."""
    lost = await svc.contacts.replace_many(
        items=[(d.contact, d.expected_version, d.outcome) for d in deletions]
    )
    released = [
        release_of(a, d.contact.id) for d in deletions if d.contact.id not in lost for a in d.released
    ]
    await svc.addresses.release_many(customer_id=customer_id, released=released)
    return lost
