"""CRM sync: apply each external contact's newest state exactly once, in bulk.

Per batch of sync messages:

1. keep the newest message per (customer, external_id); the older ones are stale;
2. in a few concurrent lanes (each external contact in one), read what was applied for each
   (point reads); anything not newer is stale: counted, skipped;
3. upserts go through ``bulk.upsert_many``, as bulk create does: contacts new to the service are
   created in bulk (claims in one insert, contacts in one insert), existing ones are updated one
   by one (compare-and-set on the version); an item whose address another contact holds fails
   alone (ADDRESS_ALREADY_EXISTS), the rest go on;
4. deletes go one by one;
5. the events are published, and only then are the applied states written.

The caller commits the batch's offsets after that. A crash anywhere means redelivery: creates
find their claims and contacts under derived ids and re-publish the events stored with them,
updates and deletes find their own last outcome; the states, written last, make the rest a no-op.
"""

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts.errors import Error
from contracts.models import ContactInput, Source
from contracts.sync import CrmContactDeleted, CrmContactUpserted
from service.domain.model import Address
from service.service_layer.bulk import ItemOrigin, NewItem, delete_by_id, upsert_many
from service.service_layer.context import Services
from service.service_layer.ports import JsonDict, SyncState

SyncMessage = CrmContactUpserted | CrmContactDeleted
Key = tuple[str, str]


@dataclass
class SyncReport:
    applied: int = 0
    stale: int = 0
    failed: dict[int, Error] = field(default_factory=dict)
    """Position in the batch → why that message could not be applied."""
    events: list[JsonDict] = field(default_factory=list)


def origin_of(message: SyncMessage) -> ItemOrigin:
    """The cause named in events: one sync message, identified by its external id and order."""
    return ItemOrigin(f"sync:{message.crm}:{message.external_id}:{message.order()}", message.type)


def contact_input(message: CrmContactUpserted) -> ContactInput:
    return ContactInput(**message.contact.model_dump(), source=Source.SYNC, external_id=message.external_id)


async def apply_sync_batch(
    messages: Sequence[tuple[int, SyncMessage]], *, svc: Services, lanes: int = 1
) -> SyncReport:
    """Apply a batch of (position, message); publish its events; record the applied states.

    The batch's external contacts are dealt into ``lanes`` groups applied concurrently, so one
    group's point reads (client CPU) overlap another's bulk writes (store CPU). Each external
    contact is in one group only, so its messages keep their order.
    """
    report = SyncReport()
    newest: dict[Key, tuple[int, SyncMessage]] = {}
    for position, message in messages:
        key = (message.customer_id, message.external_id)
        current = newest.get(key)
        if current is None or message.order() > current[1].order():
            newest[key] = (position, message)
        report.stale += current is not None
    latest = list(newest.values())
    groups = [latest[lane::lanes] for lane in range(lanes)]
    states: list[SyncState] = []
    for part in await asyncio.gather(*(_apply(group, svc=svc) for group in groups if group)):
        report.stale += part.stale
        report.failed |= part.failed
        report.events += part.events
        states += part.states

    await svc.events.publish(events=report.events)
    await svc.sync_states.put_many(states=states)
    report.applied = len(states)
    return report


@dataclass
class _Part(SyncReport):
    states: list[SyncState] = field(default_factory=list)


async def _apply(newest: list[tuple[int, SyncMessage]], *, svc: Services) -> _Part:
    """Apply the newest message of each external contact, unless a newer one was applied."""
    part = _Part()
    keys = [(m.customer_id, m.external_id) for _, m in newest]
    applied = await svc.sync_states.get_many(keys=keys)
    fresh = [
        (position, message, applied.get(key))
        for key, (position, message) in zip(keys, newest, strict=True)
        if key not in applied or message.order() > applied[key].order
    ]
    part.stale += len(newest) - len(fresh)

    upserts: dict[str, list[NewItem]] = defaultdict(list)
    by_position: dict[int, SyncMessage] = {}
    for position, message, state in fresh:
        by_position[position] = message
        if isinstance(message, CrmContactDeleted):
            part.states.append(await _delete(message, state, report=part, svc=svc))
            continue
        upserts[message.customer_id].append(
            NewItem(position, origin_of(message), contact_input(message), "contact")
        )
    for customer_id, items in upserts.items():
        outcome = await upsert_many(customer_id, items, svc=svc)
        part.events += outcome.events
        for position, result in outcome.results.items():
            if result.error is not None:
                part.failed[position] = result.error
            elif result.contact is not None:
                part.states.append(_state(by_position[position], result.contact.id, deleted=False))
    return part


async def _delete(
    message: CrmContactDeleted, state: SyncState | None, *, report: SyncReport, svc: Services
) -> SyncState:
    origin = origin_of(message)
    contact_id = state.contact_id if state is not None else ""
    if not contact_id:
        owner = await svc.addresses.owner(
            customer_id=message.customer_id, address=Address("external", message.external_id)
        )
        contact_id = owner.contact_id if owner is not None else ""
    if contact_id:
        events = await delete_by_id(
            origin=origin,
            customer_id=message.customer_id,
            contact_id=contact_id,
            item_command_id=origin.command_id,
            svc=svc,
        )
        report.events += events or []
    # Recorded even when there was nothing to delete: an older upsert must not bring it back.
    return _state(message, contact_id, deleted=True)


def _state(message: SyncMessage, contact_id: str, *, deleted: bool) -> SyncState:
    return SyncState(
        customer_id=message.customer_id,
        external_id=message.external_id,
        crm=message.crm,
        order=message.order(),
        contact_id=contact_id,
        deleted=deleted,
    )
