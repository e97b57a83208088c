"""Bulk create (create or update by external_id) and bulk delete, with a result per item.

One bad item fails alone, reported with its index and reason; the rest are still applied. Each
item is applied like a single command whose id is ``<command_id>#<index>`` (``#<contact_id>`` for
a delete), so a redelivered bulk command re-applies nothing and answers every item as before.
"""

from contracts import commands as c
from contracts.replies import BulkCreateReply, BulkDeleteReply, BulkItemResult, BulkItemStatus
from service.service_layer.context import Services
from service.service_layer.planning import Deletion, plan_delete, validated_items
from service.service_layer.ports import JsonDict, Outcome
from service.service_layer.upsert import delete_by_id, upsert_many
from service.service_layer.writing import write_deletions


async def bulk_create_contacts(command: c.BulkCreateContacts, svc: Services) -> Outcome:
    items, results = validated_items(command)
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
    return Outcome(command.customer_id, command.command_id, command.type, reply, outcome.events)


async def bulk_delete_contacts(command: c.BulkDeleteContacts, svc: Services) -> Outcome:
    """Soft-delete many contacts in a few round trips: read all, write all, release all.

    Each contact is deleted like one command whose id is ``<command_id>#<contact_id>``; the few
    that changed meanwhile (compare-and-set lost) are deleted one by one.
    """
    customer_id = command.customer_id
    contact_ids = list(dict.fromkeys(command.contact_ids))
    item_ids = {i: f"{command.command_id}#{i}" for i in contact_ids}
    stored = await svc.contacts.get_many(customer_id=customer_id, contact_ids=contact_ids)
    planned = {
        i: plan_delete(
            stored.get(i), origin=command, customer_id=customer_id, item_command_id=item_ids[i], svc=svc
        )
        for i in contact_ids
    }
    done: dict[str, list[JsonDict] | None] = {
        i: p.outcome.events if isinstance(p, Deletion) else p for i, p in planned.items()
    }
    deletions = [p for p in planned.values() if isinstance(p, Deletion)]
    lost = await write_deletions(deletions, customer_id=customer_id, svc=svc)
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
