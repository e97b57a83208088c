"""CRM sync: apply each external contact's newest state exactly once, in bulk.

Per batch of sync messages:

1. keep the newest message per (customer, external_id); the older ones are stale;
2. in a few concurrent lanes (each external contact in one), upserts of external ids never
   claimed are created in bulk as bulk create does (claims in one insert, contacts in one
   insert), without reading anything first;
3. for the rest (updates, deletes), read what was applied (point reads); anything not newer is
   stale: counted, skipped; the others are applied one by one (compare-and-set on the version);
   an item whose address another contact holds fails alone (ADDRESS_ALREADY_EXISTS);
4. the events are published, and only then are the released addresses and the applied states
   written.

The caller commits the batch's offsets after that. A crash anywhere means redelivery: creates
find their claims and contacts under derived ids and re-publish the events stored with them,
updates and deletes find their own last outcome; the states, written last, make the rest a no-op.
"""

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts.errors import Error
from contracts.models import ContactInput, Source
from contracts.sync import CrmContactDeleted, CrmContactUpserted
from service.domain.model import Address
from service.service_layer.addresses import HeldReleases
from service.service_layer.context import Services
from service.service_layer.items import ItemOrigin, ManyOutcome, NewItem
from service.service_layer.ports import FREE, JsonDict, StoredContact, SyncState
from service.service_layer.upsert import Republish, create_many, delete_by_id, upsert_each

CrmChange = CrmContactUpserted | CrmContactDeleted
"""A parsed sync message (``contracts.sync.SyncMessage``): an external contact upserted or deleted."""
Key = tuple[str, str]


@dataclass
class SyncReport:
    applied: int = 0
    stale: int = 0
    failed: dict[int, Error] = field(default_factory=dict)
    """Position in the batch → why that message could not be applied."""
    events: list[JsonDict] = field(default_factory=list)


def origin_of(message: CrmChange) -> ItemOrigin:
    """The cause named in events: one sync message, identified by its external id and order."""
    return ItemOrigin(f"sync:{message.crm}:{message.external_id}:{message.order()}", message.type)


def order_in(command_id: str) -> int | None:
    """The order of the sync message an ``origin_of`` id names; None for any other command."""
    return int(command_id.rsplit(":", 1)[1]) if command_id.startswith("sync:") else None


def contact_input(message: CrmContactUpserted) -> ContactInput:
    return ContactInput(**message.contact.model_dump(), source=Source.SYNC, external_id=message.external_id)


async def apply_sync_batch(
    messages: Sequence[tuple[int, CrmChange]], *, svc: Services, lanes: int = 1
) -> SyncReport:
    """Apply a batch of (position, message); publish its events; record the applied states.

    The batch's external contacts are dealt into ``lanes`` groups applied concurrently, so one
    group's point reads (client CPU) overlap another's bulk writes (store CPU). Each external
    contact is in one group only, so its messages keep their order.
    """
    report = SyncReport()
    newest: dict[Key, tuple[int, CrmChange]] = {}
    for position, message in messages:
        key = (message.customer_id, message.external_id)
        current = newest.get(key)
        if current is None or message.order() > current[1].order():
            newest[key] = (position, message)
        report.stale += current is not None
    latest = list(newest.values())
    groups = [latest[lane::lanes] for lane in range(lanes)]
    states: list[SyncState] = []
    existing: set[Key] = set()
    held = HeldReleases(svc.addresses)
    batch_svc = dataclasses.replace(svc, addresses=held)
    for part in await asyncio.gather(*(_apply(group, svc=batch_svc) for group in groups if group)):
        report.stale += part.stale
        report.failed |= part.failed
        report.events += part.events
        states += part.states
        existing |= part.existing

    await svc.events.publish(events=report.events)
    # Releases only once the events are out: a delete redelivered after a failed publish finds its
    # contact through the external id's claim, which this write gives up.
    await held.write()
    await svc.sync_states.put_many(states=states, existing=existing)
    report.applied = len(states)
    return report


@dataclass
class _Part(SyncReport):
    states: list[SyncState] = field(default_factory=list)
    existing: set[Key] = field(default_factory=set)
    """The keys found holding a state already."""

    def add(self, outcome: ManyOutcome, messages: dict[int, CrmChange]) -> None:
        self.events += outcome.events
        for position, result in outcome.results.items():
            if result.error is not None:
                self.failed[position] = result.error
            elif result.contact_id is not None:
                self.states.append(_state(messages[position], result.contact_id, deleted=False))


async def _apply(newest: list[tuple[int, CrmChange]], *, svc: Services) -> _Part:
    """Apply the newest message of each external contact, unless a newer one was applied.

    Upserts of external ids never claimed are created in bulk without reading anything: a state
    is only recorded for a claimed external id, and those claims are never deleted. The others
    (updates, deletes, re-creates) are checked against the recorded state, then applied one by one.
    """
    part = _Part()
    by_position = dict(newest)
    creates: dict[str, list[NewItem]] = defaultdict(list)
    checks: list[tuple[int, CrmChange]] = []
    for position, message in newest:
        if isinstance(message, CrmContactDeleted):
            checks.append((position, message))
        else:
            creates[message.customer_id].append(
                NewItem(position, origin_of(message), contact_input(message), "contact")
            )
    routed: dict[int, NewItem] = {}
    for customer_id, items in creates.items():
        outcome, claimed_before = await create_many(customer_id, items, svc=svc)
        part.add(outcome, by_position)
        routed |= {item.position: item for item in claimed_before}
    checks += [(position, by_position[position]) for position in routed]

    checks.sort(key=lambda pm: pm[0])
    keys = [(m.customer_id, m.external_id) for _, m in checks]
    applied = await svc.sync_states.get_many(keys=keys)
    part.existing |= set(applied)
    republish = unpublished(applied)
    updates: dict[str, list[NewItem]] = defaultdict(list)
    for key, (position, message) in zip(keys, checks, strict=True):
        state = applied.get(key)
        if state is not None and message.order() <= state.order:
            part.stale += 1
        elif isinstance(message, CrmContactDeleted):
            part.states.append(await _delete(message, state, report=part, svc=svc, republish=republish))
        else:
            updates[message.customer_id].append(routed[position])
    for customer_id, items in updates.items():
        outcome = ManyOutcome()
        await upsert_each(customer_id, items, out=outcome, svc=svc, republish=republish)
        part.add(outcome, by_position)
    return part


def unpublished(applied: dict[Key, SyncState]) -> Republish:
    """Events of a contact's last change made by a sync message newer than its recorded state: that
    message was applied by a batch that failed before the state was written, so perhaps before its
    events went out. Its redelivery may now be stale next to a newer message of the same external
    contact (only the newest of a batch is applied): those events go out with the newer change."""

    def events(stored: StoredContact) -> list[JsonDict]:
        last, contact = stored.last_outcome, stored.contact
        order = None if last is None else order_in(last.command_id)
        if last is None or order is None or not contact.external_id:
            return []
        state = applied.get((contact.customer_id, contact.external_id))
        return last.events if state is None or order > state.order else []

    return events


async def _delete(
    message: CrmContactDeleted,
    state: SyncState | None,
    *,
    report: SyncReport,
    svc: Services,
    republish: Republish,
) -> SyncState:
    origin = origin_of(message)
    contact_id = state.contact_id if state is not None else ""
    if not contact_id:
        owner = await svc.addresses.owner(
            customer_id=message.customer_id, address=Address("external", message.external_id)
        )
        contact_id = owner.contact_id if owner is not None else FREE
        if owner is None:
            # A state is only ever recorded under a claim of its external id: a free one here.
            await svc.addresses.claim(
                customer_id=message.customer_id,
                address=Address("external", message.external_id),
                contact_id=FREE,
                now=svc.clock.now(),
            )
    if contact_id:
        events = await delete_by_id(
            origin=origin,
            customer_id=message.customer_id,
            contact_id=contact_id,
            item_command_id=origin.command_id,
            svc=svc,
            republish=republish,
        )
        report.events += events or []
    # Recorded even when there was nothing to delete: an older upsert must not bring it back.
    return _state(message, contact_id, deleted=True)


def _state(message: CrmChange, contact_id: str, *, deleted: bool) -> SyncState:
    return SyncState(
        customer_id=message.customer_id,
        external_id=message.external_id,
        crm=message.crm,
        order=message.order(),
        contact_id=contact_id,
        deleted=deleted,
    )
