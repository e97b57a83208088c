"""Commands and queries sent to the service and timed: many at once for throughput, one at a time
for latency."""

import asyncio
import time
from collections.abc import Callable, Sequence

from contracts import commands as c
from contracts.client import ContactClient
from contracts.models import ContactPatch
from contracts.replies import ContactReply
from tests.benchmarks.stats import Json, latency_ms, throughput

BULK = 1000
"""Contacts per bulk command (the contract's most)."""

Make = Callable[[int], c.ContactCommand]
"""The command for contact number i."""


async def send(client: ContactClient, command: c.ContactCommand) -> ContactReply:
    """One command's reply, which must be ok."""
    reply = await client.command(command, timeout=120)
    if not reply.ok:
        raise SystemExit(f"command {command.command_id} failed: {reply.error}")
    return reply


async def measure_commands(client: ContactClient, make: Make, *, ops: int, latency_ops: int) -> Json:
    """Commands for contacts ``0..ops-1`` at once (throughput), then for the next ``latency_ops``
    one at a time (p50/p99 of send -> reply)."""
    began = time.perf_counter()
    await asyncio.gather(*(send(client, make(i)) for i in range(ops)))
    elapsed = time.perf_counter() - began
    latencies = []
    for i in range(ops, ops + latency_ops):
        t = time.perf_counter()
        await send(client, make(i))
        latencies.append(time.perf_counter() - t)
    return throughput(ops, elapsed) | latency_ms(latencies)


async def measure_list(client: ContactClient, customer_id: str, *, pages: int, page_size: int = 100) -> Json:
    """``pages`` full pages of ``list_contacts``, one after another (p50/p99 of a page)."""
    latencies, token = [], ""
    for n in range(pages):
        t = time.perf_counter()
        page = await client.list_contacts(customer_id, page_size=page_size, page_token=token)
        latencies.append(time.perf_counter() - t)
        if not page.ok or len(page.result) != page_size:
            raise SystemExit(f"list page {n} came back with {len(page.result)} contacts")
        token = page.next_page_token
    return {"pages": pages, "page_size": page_size} | latency_ms(latencies)


async def create(client: ContactClient, customer_id: str, count: int, *, tag: str) -> list[str]:
    """``count`` new contacts in bulk creates (commands ``{tag}-...``); their ids."""
    ids: list[str] = []
    for start in range(0, count, BULK):
        items = [
            {"first_name": "Doomed", "last_name": str(i)} for i in range(start, min(count, start + BULK))
        ]
        bulk = c.BulkCreateContacts(command_id=f"{tag}-{start}", customer_id=customer_id, contacts=items)
        reply = await client.bulk_create(bulk, timeout=300)
        ids += [item.contact_id for item in reply.items if item.contact_id is not None]
    if len(ids) != count:
        raise SystemExit(f"created {len(ids)} contacts, wanted {count}")
    return ids


async def bulk_delete(client: ContactClient, customer_id: str, ids: Sequence[str]) -> Json:
    """One ``bulk_delete_contacts`` of ``ids``, until its reply."""
    command = c.BulkDeleteContacts(command_id="bulk-delete", customer_id=customer_id, contact_ids=list(ids))
    began = time.perf_counter()
    reply = await client.bulk_delete(command, timeout=600)
    seconds = time.perf_counter() - began
    if reply.deleted != len(ids):
        raise SystemExit(f"bulk delete deleted {reply.deleted} of {len(ids)}")
    return throughput(len(ids), seconds)


async def warm_up(client: ContactClient, customer_id: str, ids: Sequence[str], seconds: float) -> int:
    """Updates of ``ids`` (contacts no measurement touches), all at once, round after round for
    ``seconds``, so that a freshly started broker's and service's compiling and cache filling fall on
    no measurement; commands sent."""
    deadline, rounds = time.perf_counter() + seconds, 0
    while ids and time.perf_counter() < deadline:
        patch = ContactPatch(job_title=f"warm {rounds}")
        await asyncio.gather(
            *(
                send(
                    client,
                    c.UpdateContact(
                        command_id=f"warm-{rounds}-{n}", customer_id=customer_id, contact_id=i, changes=patch
                    ),
                )
                for n, i in enumerate(ids)
            )
        )
        rounds += 1
    return rounds * len(ids)
