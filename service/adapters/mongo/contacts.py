"""Contacts by ``_id``, and their listing."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from pymongo import DESCENDING, DeleteOne, ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from contracts.models import format_timestamp
from service.adapters.mongo.documents import (
    CONTACT_LIST,
    CONTACTS,
    Doc,
    contact_from_doc,
    contact_to_doc,
    duplicates,
    stored_contact,
)
from service.domain.model import Contact
from service.service_layer.ports import Outcome, StoredContact


class MongoContactRepository:
    """Contacts by ``_id``, and the listing: one entry per active contact, keyed so that an ``_id``
    range sorted by ``_id`` is a customer's contacts newest first (see ``list_key``).

    An entry is written before its contact and removed after the contact is deleted, so a list
    never misses an active contact; an entry whose contact is missing, deleted or of another
    creation time (a create retried after a crash) is skipped when read.
    """

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._contacts: AsyncCollection[Doc] = db[CONTACTS]
        self._list: AsyncCollection[Doc] = db[CONTACT_LIST]

    async def get(self, *, customer_id: str, contact_id: str) -> StoredContact | None:
        # Filter on _id alone: the one filter every store answers from an index (FerretDB's SQLite
        # backend scans for anything more). The tenant check happens here instead, on the one doc.
        doc = await self._contacts.find_one({"_id": contact_id})
        return None if doc is None or doc.get("customer_id") != customer_id else stored_contact(doc)

    async def get_many(self, *, customer_id: str, contact_ids: Sequence[str]) -> dict[str, StoredContact]:
        # Concurrent point reads rather than $in: an exact _id match is indexed on every store.
        found = await asyncio.gather(*(self.get(customer_id=customer_id, contact_id=i) for i in contact_ids))
        return {s.contact.id: s for s in found if s is not None}

    async def read(self, *, customer_id: str, contact_id: str) -> Contact | None:
        doc = await self._contacts.find_one({"_id": contact_id}, {"last_outcome": False})
        return None if doc is None or doc.get("customer_id") != customer_id else contact_from_doc(doc)

    async def read_many(self, *, customer_id: str, contact_ids: Sequence[str]) -> dict[str, Contact]:
        found = await asyncio.gather(*(self.read(customer_id=customer_id, contact_id=i) for i in contact_ids))
        return {c.id: c for c in found if c is not None}

    async def insert(self, *, contact: Contact, outcome: Outcome) -> bool:
        await insert_entries(self._list, [contact])
        try:
            await self._contacts.insert_one(contact_to_doc(contact, outcome))
        except DuplicateKeyError:
            return False
        return True

    async def insert_many(self, *, items: Sequence[tuple[Contact, Outcome]]) -> set[str]:
        if not items:
            return set()
        await insert_entries(self._list, [contact for contact, _ in items])
        docs = [contact_to_doc(contact, outcome) for contact, outcome in items]
        try:
            await self._contacts.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            return duplicates(exc, [d["_id"] for d in docs])
        return set()

    async def replace(self, *, contact: Contact, expected_version: int, outcome: Outcome) -> bool:
        # Compare-and-set on the version: an exact _id, which every store reads from its index
        # (the local FerretDB too, with its patch; it also makes the write atomic there).
        result = await self._contacts.replace_one(
            {"_id": contact.id, "version": expected_version}, contact_to_doc(contact, outcome)
        )
        if result.matched_count != 1:
            return False
        if contact.is_deleted:
            await self._list.delete_one({"_id": list_key(contact)})
        return True

    async def replace_many(self, *, items: Sequence[tuple[Contact, int, Outcome]]) -> set[str]:
        if not items:
            return set()
        result = await self._contacts.bulk_write(
            [
                ReplaceOne({"_id": contact.id, "version": version}, contact_to_doc(contact, outcome))
                for contact, version, outcome in items
            ],
            ordered=False,
        )
        lost: set[str] = set()
        if result.matched_count != len(items):
            # Someone else changed some of them first: those hold another change than ours.
            written = await self._changes([contact.id for contact, _, _ in items])
            lost = {
                contact.id
                for contact, _, outcome in items
                if written.get(contact.id) != (contact.version, outcome.command_id)
            }
        gone = [contact for contact, _, _ in items if contact.is_deleted and contact.id not in lost]
        if gone:
            await self._list.bulk_write([DeleteOne({"_id": list_key(c)}) for c in gone], ordered=False)
        return lost

    async def _changes(self, contact_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        """Each contact's version and the command that made it."""
        fields = {"version": True, "last_outcome.command_id": True}
        docs = await asyncio.gather(*(self._contacts.find_one({"_id": i}, fields) for i in contact_ids))
        return {
            d["_id"]: (d.get("version", 1), (d.get("last_outcome") or {}).get("command_id", ""))
            for d in docs
            if d is not None
        }

    async def list_active(
        self, *, customer_id: str, limit: int, after: tuple[datetime, str] | None
    ) -> list[Contact]:
        prefix = _list_prefix(customer_id)
        upper = f"{prefix}{format_timestamp(after[0])}|{after[1]}" if after else prefix[:-1] + _PAST_PREFIX
        page: list[Contact] = []
        while len(page) < limit:
            wanted = limit - len(page)
            cursor = self._list.find(
                {"_id": {"$gt": prefix, "$lt": upper}}, sort=[("_id", DESCENDING)], limit=wanted
            )
            keys = [entry["_id"] async for entry in cursor]
            if not keys:
                break
            upper = keys[-1]
            listed = [key.split("|") for key in keys]
            found = await self.read_many(customer_id=customer_id, contact_ids=[i for _, _, i in listed])
            for _, stamp, contact_id in listed:
                contact = found.get(contact_id)
                if contact is not None and _listed_as(contact, stamp):
                    page.append(contact)
            if len(keys) < wanted:
                break
        return page


async def insert_entries(listing: AsyncCollection[Doc], contacts: Sequence[Contact]) -> None:
    entries = [{"_id": list_key(c), "contact_id": c.id} for c in contacts]
    if not entries:
        return
    try:
        await listing.insert_many(entries, ordered=False)
    except BulkWriteError as exc:
        duplicates(exc, [e["_id"] for e in entries])  # written by an earlier delivery: fine


def _listed_as(contact: Contact, stamp: str) -> bool:
    return not contact.is_deleted and format_timestamp(contact.tm_create) == stamp


def _list_prefix(customer_id: str) -> str:
    # Hex keeps every key "plain" (printable ASCII, no JSON escapes: what the local store's range
    # pushdown requires) and no customer's prefix is the start of another's ("|" is not hex).
    return customer_id.encode().hex() + "|"


_PAST_PREFIX = "}"  # sorts right after "|": the upper bound of a customer's whole range


def list_key(contact: Contact) -> str:
    """The listing entry's ``_id``: customer, creation time, contact id, so that descending
    ``_id`` order is the list's order (newest first, then by id)."""
    return f"{_list_prefix(contact.customer_id)}{format_timestamp(contact.tm_create)}|{contact.id}"


async def every_contact(db: AsyncDatabase[Doc], *, customer_id: str | None = None) -> AsyncIterator[Contact]:
    """Every stored contact (one customer's, when given), deleted ones too, without its last outcome:
    one pass over the collection, for loads and operators, never for requests."""
    query = {} if customer_id is None else {"customer_id": customer_id}
    async for doc in db[CONTACTS].find(query, {"last_outcome": False}, batch_size=2000):
        yield contact_from_doc(doc)
