"""Contacts written straight into the store as the service writes them, and the benchmarks' one door
into the service's internals.

Every benchmark import from ``service`` (the store adapter, the document mapping, the service layer)
is made here, so a rename there is a change in this file alone. Loading goes straight to the store
because 100,000 contacts through commands would take far too long; the documents are built by the
service's own code, so they are what ``create_contact`` would have written.
"""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from contracts import commands as c
from contracts.models import Contact as WireContact
from contracts.models import ContactInput
from service.adapters.mongo import (
    ADDRESSES,
    COMMAND_LOG,
    CONTACT_LIST,
    CONTACTS,
    SYNC_STATE,
    MongoAddressBook,
    contact_to_doc,
    ensure_schema,
    list_key,
    make_client,
    mark_listed,
)
from service.bootstrap import UtcClock
from service.config import Settings
from service.domain.model import Address, AddressKind
from service.service_layer.addresses import resolve
from service.service_layer.commands import build_contact, created_outcome
from service.service_layer.context import Services
from service.service_layer.mapping import contact_to_wire, derived_id
from tests.conftest import store_services

__all__ = [
    "ADDRESSES",
    "COMMAND_LOG",
    "CONTACTS",
    "CONTACT_LIST",
    "SYNC_STATE",
    "ContactSet",
    "Services",
    "ensure_schema",
    "load",
    "lookup_workers",
    "make_client",
    "resolve_phone",
    "store_side",
    "stored_wire",
]

log = logging.getLogger("bench")

CHUNK = 1000
"""Contacts built and inserted at a time."""

Doc = dict[str, Any]
Docs = dict[str, list[Doc]]
"""Documents by collection name."""


def lookup_workers() -> int:
    """The service's default number of lookup workers, for the report."""
    return int(Settings.model_fields["lookup_workers"].default)


@dataclass(frozen=True)
class ContactSet:
    """Contacts 0, 1, ... of one customer, contact ``i`` created by command ``{command_prefix}{i}``
    from ``contact(i)`` (a ContactInput as JSON)."""

    customer_id: str
    command_prefix: str
    contact: Callable[[int], Doc]

    def command_id(self, i: int) -> str:
        return f"{self.command_prefix}{i}"

    def contact_id(self, i: int) -> str:
        """The id ``create_contact`` derives for the command that created contact ``i``."""
        return derived_id("contact", self.customer_id, self.command_id(i))

    def claim_id(self, kind: AddressKind, value: str) -> str:
        """The ``_id`` of the claim on an address (kind ``phone``, ``email`` or ``external``)."""
        return MongoAddressBook._id(self.customer_id, Address(kind, value))

    def docs(self, svc: Services, start: int, stop: int) -> Docs:
        """What ``create_contact`` writes for contacts ``start..stop-1``: each contact with its
        outcome, its address claims and its listing entry."""
        out: Docs = {CONTACTS: [], ADDRESSES: [], CONTACT_LIST: []}
        for i in range(start, stop):
            command = c.CreateContact(
                command_id=self.command_id(i),
                customer_id=self.customer_id,
                contact=ContactInput.model_validate(self.contact(i)),
            )
            built, wanted = build_contact(
                command.contact,
                contact_id=self.contact_id(i),
                customer_id=self.customer_id,
                seed=(self.customer_id, command.command_id),
                svc=svc,
            )
            out[CONTACTS].append(contact_to_doc(built, created_outcome(command, built)))
            out[ADDRESSES] += [
                MongoAddressBook.claim_doc(self.customer_id, a, built.id, built.tm_create) for a, _ in wanted
            ]
            out[CONTACT_LIST].append({"_id": list_key(built), "contact_id": built.id})
        return out


class _NoEvents:
    """Loading and the store baselines publish nothing."""

    async def publish(self, *, events: Sequence[dict[str, Any]]) -> None:
        raise AssertionError("the benchmark's own store access never publishes")


def store_side(db: Any) -> Services:
    """The store half of the service on ``db``, for loading and store baselines; never the broker."""
    return store_services(db, clock=UtcClock(), events=_NoEvents())


async def stored_wire(svc: Services, customer_id: str, contact_id: str) -> WireContact | None:
    """A stored contact as a lookup should return it."""
    stored = await svc.contacts.get(customer_id=customer_id, contact_id=contact_id)
    return None if stored is None else contact_to_wire(stored.contact)


async def resolve_phone(svc: Services, customer_id: str, phone: str) -> str | None:
    """The store half of a lookup as the service does it (claim read, contact read): the id found."""
    contact = await resolve(Address("phone", phone), customer_id=customer_id, svc=svc)
    return None if contact is None else contact.id


@dataclass
class _Progress:
    build_seconds: float = 0.0
    insert_seconds: float = 0.0
    built: Counter[str] = field(default_factory=Counter)
    inserted: Counter[str] = field(default_factory=Counter)

    async def insert(self, db: Any, docs: Docs) -> None:
        # A failed insert raises (BulkWriteError); the counts double-check nothing went missing.
        began = time.perf_counter()
        for name, batch in docs.items():
            self.inserted[name] += len((await db[name].insert_many(batch, ordered=False)).inserted_ids)
        self.insert_seconds += time.perf_counter() - began


async def load(db: Any, contacts: ContactSet, size: int, svc: Services | None = None) -> Doc:
    """Write contacts ``0..size-1`` in chunks, the next chunk built (in a thread) while one is
    inserted, then mark the listing complete; counts and timings."""
    svc = svc or store_side(db)
    progress = _Progress()
    began = time.perf_counter()
    pending: asyncio.Task[None] | None = None
    for start in range(0, size, CHUNK):
        t = time.perf_counter()
        docs = await asyncio.to_thread(contacts.docs, svc, start, min(size, start + CHUNK))
        progress.build_seconds += time.perf_counter() - t
        progress.built.update({name: len(batch) for name, batch in docs.items()})
        if pending is not None:
            await pending
        pending = asyncio.create_task(progress.insert(db, docs))
        if start and start % 20_000 == 0:
            log.info("  loaded %d / %d", start, size)
    if pending is not None:
        await pending
    await mark_listed(db)
    total = time.perf_counter() - began
    # Not count_documents: FerretDB answers it with a full scan, minutes at 100,000 contacts.
    if progress.inserted != progress.built:
        raise RuntimeError(f"inserted {dict(progress.inserted)}, wanted {dict(progress.built)}")
    log.info("  loaded %d contacts in %.1fs", size, total)
    return {
        "contacts": size,
        "claims": progress.inserted[ADDRESSES],
        "seconds": round(total, 2),
        "contacts_per_second": round(size / total, 1),
        "build_seconds_in_thread": round(progress.build_seconds, 2),
        "insert_seconds": round(progress.insert_seconds, 2),
    }
