"""Bulk create (create or update by external_id) and bulk delete, with a result per item.

One bad item fails alone, reported with its index and reason; the rest are still applied. Each
item is applied like a single command whose id is ``<command_id>#<index>``, so a redelivered
bulk command re-applies nothing and answers every item as before.
"""

import asyncio
import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from pydantic import ValidationError

from contracts import commands as c
from contracts.errors import Error, ErrorCode
from contracts.models import ContactInput
from contracts.replies import BulkCreateReply, BulkDeleteReply, BulkItemResult, BulkItemStatus
from service.domain.errors import AddressAlreadyExists, DomainError
from service.domain.model import Address, Contact
from service.service_layer import mapping
from service.service_layer.addresses import (
    Footprint,
    claim_addresses,
    release_addresses,
    release_of,
    wanted_by,
)
from service.service_layer.commands import (
    ConcurrentChange,
    Origin,
    build_contact,
    change_event,
    created_event,
)
from service.service_layer.context import Services
from service.service_layer.ports import FREE, Claim, JsonDict, Outcome, StoredContact


def validation_error(exc: ValidationError, *, prefix: str) -> Error:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return Error(
        code=ErrorCode.INVALID_ARGUMENT,
        message=first["msg"],
        field=f"{prefix}.{loc}" if loc else prefix,
    )


async def bulk_create_contacts(command: c.BulkCreateContacts, svc: Services) -> Outcome:
    results: dict[int, ItemResult] = {}
    items: list[NewItem] = []
    for index, raw in enumerate(command.contacts):
        try:
            contact_input = ContactInput.model_validate(raw)
        except ValidationError as exc:
            results[index] = ItemResult(
                index, "failed", error=validation_error(exc, prefix=f"contacts[{index}]")
            )
            continue
        origin = ItemOrigin(f"{command.command_id}#{index}", command.type)
        items.append(NewItem(index, origin, contact_input, f"contacts[{index}]"))
    outcome = await upsert_many(command.customer_id, items, svc=svc)
    results.update(outcome.results)
    ordered = [results[i] for i in sorted(results)]
    reply = BulkCreateReply(
        created=sum(i.status == "created" for i in ordered),
        updated=sum(i.status == "updated" for i in ordered),
        failed=sum(i.status == "failed" for i in ordered),
        errors=[BulkItemResult(index=i.index, status="failed", error=i.error) for i in ordered if i.error],
        items=[BulkItemStatus(index=i.index, status=i.status, contact_id=i.contact_id) for i in ordered],
    ).model_dump(mode="json")
    # The contacts are in wire form already: placed, not validated and dumped again.
    reply["contacts"] = [i.contact for i in ordered if i.contact is not None]
    return Outcome(
        customer_id=command.customer_id,
        command_id=command.command_id,
        command_type=command.type,
        reply=reply,
        events=outcome.events,
    )


@dataclass(frozen=True, slots=True)
class ItemResult:
    """A bulk item's or sync message's result, its contact in wire form (``BulkItemResult`` as JSON)."""

    index: int
    status: Literal["created", "updated", "failed"]
    contact: JsonDict | None = None
    error: Error | None = None

    @property
    def contact_id(self) -> str | None:
        return None if self.contact is None else str(self.contact["id"])

    def to_json(self) -> JsonDict:
        """``BulkItemResult(...).model_dump(mode="json")``: what an item's stored outcome holds."""
        error = None if self.error is None else self.error.model_dump(mode="json")
        return {"index": self.index, "status": self.status, "contact": self.contact, "error": error}

    @classmethod
    def from_json(cls, doc: JsonDict, *, index: int | None = None) -> "ItemResult":
        error = None if doc.get("error") is None else Error.model_validate(doc["error"])
        return cls(doc["index"] if index is None else index, doc["status"], doc.get("contact"), error)


@dataclass(frozen=True, slots=True)
class ItemOrigin:
    """One item of a bulk command or sync batch, as events name their cause."""

    command_id: str
    type: str


@dataclass(frozen=True, slots=True)
class NewItem:
    position: int
    origin: ItemOrigin
    contact_input: ContactInput
    prefix: str
    """How error fields are named: ``contacts[3]`` for a bulk item, ``contact`` for a sync message."""
    claim: Claim | None = None
    """Its external id's claim as found when claiming it failed (it was claimed before)."""


@dataclass
class ManyOutcome:
    results: dict[int, ItemResult] = field(default_factory=dict)
    events: list[JsonDict] = field(default_factory=list)


async def upsert_many(customer_id: str, items: list[NewItem], *, svc: Services) -> ManyOutcome:
    """Upsert many contacts by external_id: the new ones in bulk, the rest one by one.

    One item's failure never stops the others.
    """
    out, rest = await create_many(customer_id, items, svc=svc)
    await upsert_each(customer_id, rest, out=out, svc=svc)
    return out


CHUNK = 250
"""Items of a bulk or sync batch built and written together; the next chunk is built meanwhile."""


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
    fresh: list[NewItem] = []
    repeats: list[NewItem] = []
    seen_external: set[str] = set()
    for item in items:
        external = item.contact_input.external_id
        (repeats if external and external in seen_external else fresh).append(item)
        if external:
            seen_external.add(external)
    seen: set[Address] = set()
    parts: list[ManyOutcome] = []
    writes: list[asyncio.Task[list[NewItem]]] = []
    try:
        async with asyncio.TaskGroup() as group:
            for start in range(0, len(fresh), CHUNK):
                part = ManyOutcome()
                built = _build(customer_id, fresh[start : start + CHUNK], out=part, seen=seen, svc=svc)
                writes.append(group.create_task(_write(customer_id, built, out=part, svc=svc)))
                parts.append(part)
                await asyncio.sleep(0)  # that chunk's first write goes out before the next is built
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None  # as one chunk raised it: the failure rules need its type
    out = ManyOutcome()
    for part in parts:
        out.results |= part.results
        out.events += part.events
    claimed_before = [item for write in writes for item in write.result()]
    return out, sorted(claimed_before + repeats, key=lambda i: i.position)


async def upsert_each(customer_id: str, items: list[NewItem], *, out: ManyOutcome, svc: Services) -> None:
    """Upsert items in order: update the contact holding the external id, or create.

    The contacts holding the items' external ids are read together first. Items then start one
    after another, each while earlier ones still write, unless its addresses clash with an
    earlier one's (``Footprint``): so each gets the answer it would get one after another.
    """
    known = await _holders(customer_id, items, svc=svc)
    running: list[tuple[asyncio.Task[tuple[ItemResult, list[JsonDict]]], Footprint]] = []
    for item in items:
        holder = known.get(item.position)
        mine = _footprint(item, holder, svc=svc)
        before = [task for task, theirs in running if mine.waits_for(theirs)]
        if before:
            await asyncio.wait(before)
        running.append((asyncio.create_task(_upsert(customer_id, item, holder, svc=svc)), mine))
    done = await asyncio.gather(*(task for task, _ in running), return_exceptions=True)
    for item, result in zip(items, done, strict=True):
        if isinstance(result, BaseException):
            raise result
        out.results[item.position], events = result
        out.events += events


async def _upsert(
    customer_id: str, item: NewItem, holder: "Holder | None", *, svc: Services
) -> tuple[ItemResult, list[JsonDict]]:
    for _ in range(5):
        try:
            return await upsert_by_external_id(
                origin=item.origin,
                customer_id=customer_id,
                item_command_id=item.origin.command_id,
                index=item.position,
                prefix=item.prefix,
                contact_input=item.contact_input,
                svc=svc,
                holder=holder,
            )
        except ConcurrentChange:
            holder = None  # read again
    raise ConcurrentChange(f"item {item.origin.command_id}")


def _footprint(item: NewItem, holder: "Holder | None", *, svc: Services) -> Footprint:
    """What upserting ``item`` may claim or give up, given the contact holding its external id."""
    try:
        wanted = wanted_by(item.contact_input, default_region=svc.default_region)
    except DomainError:
        return Footprint(frozenset(), releases=False)  # it fails without touching anything
    external = Address("external", item.contact_input.external_id)
    wanted.add(external)
    if holder is None:  # not read: it may update any contact
        return Footprint(frozenset(wanted), releases=True)
    owner = holder[0]
    held = owner.contact.addresses() if owner is not None and owner.contact.holds(external) else set()
    return Footprint(frozenset(wanted - held), releases=bool(held - wanted))


Holder = tuple[StoredContact | None]
"""The contact holding an item's external id as read before (None: none holds it)."""


async def _holders(customer_id: str, items: list[NewItem], *, svc: Services) -> dict[int, Holder]:
    """For each item with an external id, the contact that held it when read (point reads, together).

    Not for an external id that several items share: the first of them may create its holder.
    """
    shared = Counter(i.contact_input.external_id for i in items)
    externals = {
        i.position: Address("external", i.contact_input.external_id)
        for i in items
        if i.contact_input.external_id and shared[i.contact_input.external_id] == 1
    }
    known = {externals[i.position]: i.claim for i in items if i.claim is not None and i.position in externals}
    unknown = [a for a in externals.values() if a not in known]
    claims = known | await svc.addresses.owners(customer_id=customer_id, addresses=unknown)
    owners = {c.contact_id for c in claims.values() if c.contact_id != FREE}
    stored = await svc.contacts.get_many(customer_id=customer_id, contact_ids=sorted(owners))
    held: dict[int, Holder] = {}
    for position, address in externals.items():
        claim = claims.get(address)
        held[position] = (stored.get(claim.contact_id) if claim is not None else None,)
    return held


@dataclass
class _Built:
    item: NewItem
    contact: Contact
    wanted: list[tuple[Address, str]]


def _build(
    customer_id: str, items: list[NewItem], *, out: ManyOutcome, seen: set[Address], svc: Services
) -> list[_Built]:
    """The items as new contacts; an item wanting an address in ``seen`` (or invalid) fails."""
    built: list[_Built] = []
    for item in items:
        contact_id = mapping.derived_id("contact", customer_id, item.origin.command_id)
        try:
            contact, wanted = build_contact(
                item.contact_input,
                contact_id=contact_id,
                customer_id=customer_id,
                seed=(customer_id, item.origin.command_id),
                svc=svc,
            )
            wanted = [(a, f.replace("contact.", f"{item.prefix}.", 1)) for a, f in wanted]
            twice = next((f for a, f in wanted if a in seen), None)
            if twice is not None:
                raise AddressAlreadyExists("already claimed by an earlier item", field=twice)
        except DomainError as exc:
            out.results[item.position] = _failed(item, exc)
            continue
        seen.update(a for a, _ in wanted)
        built.append(_Built(item, contact, wanted))
    return built


async def _write(customer_id: str, built: list[_Built], *, out: ManyOutcome, svc: Services) -> list[NewItem]:
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
    others = [(a, b.contact.id) for b in fresh for a, _ in b.wanted if a.kind != "external"]
    taken |= await svc.addresses.claim_many(customer_id=customer_id, wanted=others, now=now)
    ready: list[_Built] = []
    for b in fresh:
        contested = [(a, f) for a, f in b.wanted if a in taken and taken[a].contact_id != b.contact.id]
        if contested:
            try:
                # One by one: a claim left by a contact that never got written is taken over.
                await claim_addresses(contested, customer_id=customer_id, contact_id=b.contact.id, svc=svc)
            except DomainError as exc:
                mine = {a for a, _ in b.wanted if a not in taken}
                await release_addresses(mine, customer_id=customer_id, contact_id=b.contact.id, svc=svc)
                out.results[b.item.position] = _failed(b.item, exc)
                continue
        ready.append(b)

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
    return claimed_before


def _failed(item: NewItem, exc: DomainError) -> ItemResult:
    return ItemResult(item.position, "failed", error=_item_error(exc, prefix=item.prefix))


def _item_error(exc: DomainError, *, prefix: str) -> Error:
    error = mapping.to_error(exc)
    if error.field and not error.field.startswith(prefix):
        error = error.model_copy(update={"field": f"{prefix}.{error.field.removeprefix('contact.')}"})
    return error


async def upsert_by_external_id(
    *,
    origin: Origin,
    customer_id: str,
    item_command_id: str,
    index: int,
    prefix: str,
    contact_input: ContactInput,
    svc: Services,
    holder: Holder | None = None,
) -> tuple[ItemResult, list[JsonDict]]:
    """Create the contact, or make the active contact with its external_id look like it.

    ``holder``: the contact that held the external id when read before (else it is read here).
    """
    new_id = mapping.derived_id("contact", customer_id, item_command_id)
    status: Literal["created", "updated"]
    stored = await _target(customer_id, contact_input.external_id, holder, svc=svc)
    if stored is None:
        stored = await svc.contacts.get(customer_id=customer_id, contact_id=new_id)
    if (
        stored is not None
        and stored.last_outcome is not None
        and stored.last_outcome.command_id == item_command_id
    ):
        return ItemResult.from_json(stored.last_outcome.reply), stored.last_outcome.events
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
            status, changed, before_version, before = "created", [], 0, set()
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
        return ItemResult(index, "failed", error=_item_error(exc, prefix=prefix)), []
    if status == "updated":
        if not changed:
            return ItemResult(index, "updated", mapping.contact_json(contact)), []
        contact.touch(svc.clock.now())
    own = mapping.contact_json(contact)
    item = ItemResult(index, status, own)
    item_events = [
        created_event(origin, contact, own)
        if status == "created"
        else change_event(origin, contact, changed, own=own)
    ]
    outcome = Outcome(
        customer_id=customer_id,
        command_id=item_command_id,
        command_type=origin.type,
        reply=item.to_json(),
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


async def _target(
    customer_id: str, external_id: str, holder: Holder | None, *, svc: Services
) -> StoredContact | None:
    """The active contact holding ``external_id``, if any."""
    if not external_id:
        return None
    if holder is None:
        claim = await svc.addresses.owner(customer_id=customer_id, address=Address("external", external_id))
        if claim is None or claim.contact_id == FREE:
            return None
        holder = (await svc.contacts.get(customer_id=customer_id, contact_id=claim.contact_id),)
    (owner,) = holder
    return owner if owner is not None and owner.contact.holds(Address("external", external_id)) else None


async def bulk_delete_contacts(command: c.BulkDeleteContacts, svc: Services) -> Outcome:
    """Soft-delete many contacts in a few round trips: read all, write all, release all.

    Each contact is deleted like one command whose id is ``<command_id>#<contact_id>``; the few
    that changed meanwhile (compare-and-set lost) are deleted one by one.
    """
    customer_id = command.customer_id
    contact_ids = list(dict.fromkeys(command.contact_ids))
    item_ids = {i: f"{command.command_id}#{i}" for i in contact_ids}
    stored = await svc.contacts.get_many(customer_id=customer_id, contact_ids=contact_ids)
    done: dict[str, list[JsonDict] | None] = {}
    writes: list[tuple[Contact, int, Outcome]] = []
    released: list[tuple[Address, str, bool]] = []
    for contact_id in contact_ids:
        found = stored.get(contact_id)
        if found is None or (found.contact.is_deleted and _last_command(found) != item_ids[contact_id]):
            done[contact_id] = None
        elif _last_command(found) == item_ids[contact_id]:
            assert found.last_outcome is not None
            done[contact_id] = found.last_outcome.events  # deleted by an earlier delivery
        else:
            contact, version = found.contact, found.contact.version
            released += [release_of(a, contact_id) for a in contact.addresses()]
            events = _soft_delete(contact, origin=command, svc=svc)
            writes.append(
                (contact, version, Outcome(customer_id, item_ids[contact_id], command.type, {}, events))
            )
            done[contact_id] = events
    lost = await svc.contacts.replace_many(items=writes)
    await svc.addresses.release_many(
        customer_id=customer_id, released=[r for r in released if r[1] not in lost]
    )
    for contact_id in sorted(lost, key=contact_ids.index):
        done[contact_id] = await delete_by_id(
            origin=command,
            customer_id=customer_id,
            contact_id=contact_id,
            item_command_id=item_ids[contact_id],
            svc=svc,
        )
    events = [e for i in contact_ids for e in done[i] or []]
    not_found = [i for i in contact_ids if done[i] is None]
    reply = BulkDeleteReply(deleted=len(contact_ids) - len(not_found), not_found=not_found)
    return Outcome(customer_id, command.command_id, command.type, reply.model_dump(mode="json"), events)


def _last_command(stored: StoredContact) -> str | None:
    return None if stored.last_outcome is None else stored.last_outcome.command_id


def _soft_delete(contact: Contact, *, origin: Origin, svc: Services) -> list[JsonDict]:
    """Mark ``contact`` deleted (a new version); its deletion event."""
    contact.delete(svc.clock.now())
    contact.touch(svc.clock.now())
    return [change_event(origin, contact, ["tm_delete"])]


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
        item_events = _soft_delete(contact, origin=origin, svc=svc)
        outcome = Outcome(customer_id, item_command_id, origin.type, {}, item_events)
        if await svc.contacts.replace(contact=contact, expected_version=before_version, outcome=outcome):
            await release_addresses(before, customer_id=customer_id, contact_id=contact_id, svc=svc)
            return item_events
    raise ConcurrentChange(contact_id)
