"""The single entry for commands: apply once, log, publish, then let the caller commit.

It answers from the command log when the command was seen before, else applies it, logs the
outcome while publishing its events, and only then returns, so the caller may commit the offset.
A crash anywhere before that means redelivery, never loss; a redelivery never applies anything
twice (its events may go out twice, with the same event ids).
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from contracts import commands as c
from service.service_layer import bulk, commands
from service.service_layer.commands import retrying
from service.service_layer.context import Services
from service.service_layer.ports import JsonDict, Outcome


async def handle_command(command: c.ContactCommand, *, svc: Services) -> JsonDict:
    """Apply ``command`` once; return its reply (the same reply on every redelivery or replay)."""
    logged = await svc.log.get(customer_id=command.customer_id, command_id=command.command_id)
    if logged is None:
        outcome = await _apply(command, svc=svc)
        # The change is durable once applied: its events need not wait for the log entry (a bulk's
        # is large). A crash before both are done re-applies nothing and publishes the events
        # again, with the same event ids (delivery is at least once).
        await asyncio.gather(svc.log.record(outcome=outcome), svc.events.publish(events=outcome.events))
    else:
        outcome = logged.outcome
        if logged.published:
            return outcome.reply
        await svc.events.publish(events=outcome.events)
    await svc.log.mark_published(customer_id=command.customer_id, command_id=command.command_id)
    return outcome.reply


async def _apply(command: c.ContactCommand, *, svc: Services) -> Outcome:
    handler: Callable[[Any, Services], Awaitable[Outcome]] = _HANDLERS[type(command)]
    return await retrying(
        lambda _: handler(command, svc), gave_up=f"contact kept changing under command {command.command_id}"
    )


_HANDLERS: dict[type, Callable[[Any, Services], Awaitable[Outcome]]] = {
    c.CreateContact: commands.create_contact,
    c.UpdateContact: commands.update_contact,
    c.DeleteContact: commands.delete_contact,
    c.AddPhoneNumber: commands.add_phone_number,
    c.UpdatePhoneNumber: commands.update_phone_number,
    c.RemovePhoneNumber: commands.remove_phone_number,
    c.AddEmail: commands.add_email,
    c.UpdateEmail: commands.update_email,
    c.RemoveEmail: commands.remove_email,
    c.AddTag: commands.add_tag,
    c.RemoveTag: commands.remove_tag,
    c.BulkCreateContacts: bulk.bulk_create_contacts,
    c.BulkDeleteContacts: bulk.bulk_delete_contacts,
}
