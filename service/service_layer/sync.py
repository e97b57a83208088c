"""CRM sync: apply each external contact's newest state exactly once, in bulk.

Per batch of sync messages:

1. keep the newest message per (customer, external_id); the older ones are stale;
2. read what was applied for each (point reads); anything not newer is stale: counted, skipped;
3. contacts new to the service are created in bulk: their addresses claimed in one insert, the
   contacts written in one insert; an item whose address another contact holds fails alone
   (ADDRESS_ALREADY_EXISTS), the rest go on;
4. updates and deletes of existing contacts go one by one (compare-and-set on the version);
5. the events are published, and only then are the applied states written.

The caller commits the batch's offsets after that. A crash anywhere means redelivery: creates
find their claims and contacts under derived ids and re-publish the events stored with them,
updates and deletes find their own last outcome; the states, written last, make the rest a no-op.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts.errors import Error
from contracts.models import ContactInput, Source
from contracts.replies import BulkItemResult
from contracts.sync import CrmContactDeleted, CrmContactUpserted
from service.domain.errors import AddressAlreadyExists, DomainError
from service.domain.model import Address, Contact
from service.service_layer import mapping
from service.service_layer.addresses import claim_addresses, release_addresses
from service.service_layer.bulk import delete_by_id, upsert_by_external_id
from service.service_layer.commands import build_contact, change_event, set_fields
from service.service_layer.context import Services
from service.service_layer.ports import JsonDict, Outcome, SyncState

SyncMessage = CrmContactUpserted | CrmContactDeleted
Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class SyncOrigin:
    """The cause named in events: one sync message, identified by its external id and order."""

    command_id: str
    type: str


@dataclass
class SyncReport:
    applied: int = 0
    stale: int = 0
    failed: dict[int, Error] = field(default_factory=dict)
    """Position in the batch → why that message could not be applied."""
    events: list[JsonDict] = field(default_factory=list)


def origin_of(message: SyncMessage) -> SyncOrigin:
    return SyncOrigin(f"sync:{message.crm}:{message.external_id}:{message.order()}", message.type)


def contact_input(message: CrmContactUpserted) -> ContactInput:
    return ContactInput(**message.contact.model_dump(), source=Source.SYNC, external_id=message.external_id)


async def apply_sync_batch(messages: Sequence[tuple[int, SyncMessage]], *, svc: Services) -> SyncReport:
    """Apply a batch of (position, message); publish its events; record the applied states."""
    report = SyncReport()
    newest: dict[Key, tuple[int, SyncMessage]] = {}
    for position, message in messages:
        key = (message.customer_id, message.external_id)
        current = newest.get(key)
        if current is None or message.order() > current[1].order():
            newest[key] = (position, message)
        report.stale += current is not None
    applied = await svc.sync_states.get_many(keys=list(newest))
    fresh = [
        (position, message, applied.get(key))
        for key, (position, message) in newest.items()
        if key not in applied or message.order() > applied[key].order
    ]
    report.stale += len(newest) - len(fresh)

    states: list[SyncState] = []
    creates: dict[str, list[tuple[int, CrmContactUpserted]]] = defaultdict(list)
    one_by_one: list[tuple[int, SyncMessage, SyncState | None]] = []
    for position, message, state in fresh:
        if isinstance(message, CrmContactUpserted) and (state is None or state.deleted):
            creates[message.customer_id].append((position, message))
        else:
            one_by_one.append((position, message, state))
    for customer_id, items in creates.items():
        states += await _create_many(customer_id, items, report=report, one_by_one=one_by_one, svc=svc)
    for position, message, state in one_by_one:
        applied_state = await _apply_one(position, message, state, report=report, svc=svc)
        if applied_state is not None:
            states.append(applied_state)

    await svc.events.publish(events=report.events)
    await svc.sync_states.put_many(states=states)
    report.applied = len(states)
    return report


@dataclass
class _NewContact:
    position: int
    message: CrmContactUpserted
    contact: Contact
    wanted: list[tuple[Address, str]]


async def _create_many(
    customer_id: str,
    items: list[tuple[int, CrmContactUpserted]],
    *,
    report: SyncReport,
    one_by_one: list[tuple[int, SyncMessage, SyncState | None]],
    svc: Services,
) -> list[SyncState]:
    # A contact the service already has under this external id (made through the Contact API,
    # say) is an update, not a create.
    owners = await svc.addresses.owners(
        customer_id=customer_id, addresses=[Address("external", m.external_id) for _, m in items]
    )
    built: list[_NewContact] = []
    seen: set[Address] = set()
    for position, message in items:
        if Address("external", message.external_id) in owners:
            one_by_one.append((position, message, None))
            continue
        origin = origin_of(message)
        contact_id = mapping.derived_id("contact", customer_id, origin.command_id)
        try:
            contact, wanted = build_contact(
                contact_input(message),
                contact_id=contact_id,
                customer_id=customer_id,
                seed=(customer_id, origin.command_id),
                svc=svc,
            )
            twice = next((f for a, f in wanted if a in seen), None)
            if twice is not None:
                raise AddressAlreadyExists("already claimed by another contact of this batch", field=twice)
        except DomainError as exc:
            report.failed[position] = mapping.to_error(exc)
            continue
        seen.update(a for a, _ in wanted)
        built.append(_NewContact(position, message, contact, wanted))

    taken = await svc.addresses.claim_many(
        customer_id=customer_id,
        wanted=[(a, new.contact.id) for new in built for a, _ in new.wanted],
        now=svc.clock.now(),
    )
    ready: list[_NewContact] = []
    for new in built:
        contested = [(a, f) for a, f in new.wanted if a in taken and taken[a].contact_id != new.contact.id]
        if contested:
            try:
                # One by one: a claim left behind by a contact that never got written is taken over.
                await claim_addresses(contested, customer_id=customer_id, contact_id=new.contact.id, svc=svc)
            except DomainError as exc:
                mine = {a for a, _ in new.wanted if a not in taken}
                await release_addresses(mine, customer_id=customer_id, contact_id=new.contact.id, svc=svc)
                report.failed[new.position] = mapping.to_error(exc)
                continue
        ready.append(new)

    outcomes = {}
    for new in ready:
        origin = origin_of(new.message)
        event = change_event(origin, new.contact, set_fields(new.contact), created=True)
        # Stored with the contact in the shape upsert_by_external_id reads back on a redelivery.
        reply = BulkItemResult(
            index=new.position, status="created", contact=mapping.contact_to_wire(new.contact)
        ).model_dump(mode="json")
        outcomes[new.contact.id] = Outcome(customer_id, origin.command_id, origin.type, reply, [event])
    existing = await svc.contacts.insert_many(items=[(n.contact, outcomes[n.contact.id]) for n in ready])
    if existing:
        # Written by an earlier delivery of this batch: publish what that delivery stored.
        stored = await svc.contacts.get_many(customer_id=customer_id, contact_ids=sorted(existing))
        for contact_id, found in stored.items():
            if found.last_outcome is not None:
                outcomes[contact_id] = found.last_outcome
    for new in ready:
        report.events += outcomes[new.contact.id].events
    return [_state(new.message, new.contact.id, deleted=False) for new in ready]


async def _apply_one(
    position: int, message: SyncMessage, state: SyncState | None, *, report: SyncReport, svc: Services
) -> SyncState | None:
    origin = origin_of(message)
    if isinstance(message, CrmContactDeleted):
        contact_id = state.contact_id if state is not None else ""
        if not contact_id:
            target = await svc.addresses.owner(
                customer_id=message.customer_id, address=Address("external", message.external_id)
            )
            contact_id = target.contact_id if target is not None else ""
        events = (
            await delete_by_id(
                origin=origin,
                customer_id=message.customer_id,
                contact_id=contact_id,
                item_command_id=origin.command_id,
                svc=svc,
            )
            if contact_id
            else None
        )
        report.events += events or []
        # Recorded even when there was nothing to delete: an older upsert must not bring it back.
        return _state(message, contact_id, deleted=True)
    item, events = await upsert_by_external_id(
        origin=origin,
        customer_id=message.customer_id,
        item_command_id=origin.command_id,
        index=position,
        prefix="contact",
        contact_input=contact_input(message),
        svc=svc,
    )
    if item.error is not None:
        report.failed[position] = item.error
        return None
    report.events += events
    assert item.contact is not None
    return _state(message, item.contact.id, deleted=False)


def _state(message: SyncMessage, contact_id: str, *, deleted: bool) -> SyncState:
    return SyncState(
        customer_id=message.customer_id,
        external_id=message.external_id,
        crm=message.crm,
        order=message.order(),
        contact_id=contact_id,
        deleted=deleted,
    )
