"""Collections, indexes and one-time backfills; the client."""

import contextlib
from datetime import UTC, datetime

from pymongo import ASCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from contracts.models import parse_timestamp
from service.adapters.mongo import documents as d
from service.adapters.mongo.contacts import insert_entries
from service.adapters.mongo.documents import Doc
from service.domain.model import Contact

INDEXES: dict[str, list[IndexModel]] = {
    d.CONTACTS: [
        IndexModel([("customer_id", ASCENDING), ("external_id", ASCENDING)], name="customer_external_id"),
        # Diagnostics and ad-hoc queries by E.164 / email; lookups go through the claims' _id.
        IndexModel(
            [("customer_id", ASCENDING), ("phone_numbers.number_e164", ASCENDING)],
            name="customer_e164",
        ),
        IndexModel([("customer_id", ASCENDING), ("emails.address", ASCENDING)], name="customer_email"),
    ],
    d.ADDRESSES: [IndexModel([("contact_id", ASCENDING)], name="contact")],
    d.COMMAND_LOG: [IndexModel([("tm_create", ASCENDING)], name="tm_create")],  # retention
    d.SYNC_STATE: [],
    d.CONTACT_LIST: [],  # read by _id range alone
    d.SCHEMA_MARKS: [],
}

_LISTED = "contact_list.v1"
"""Mark of a database whose listing holds every active contact (written after the backfill)."""


async def ensure_schema(db: AsyncDatabase[Doc]) -> None:
    """Create collections and indexes, and fill the listing of a database written before it
    existed; harmless to run again (same names, same keys; the backfill runs until it is marked)."""
    existing = set(await db.list_collection_names())
    for name, indexes in INDEXES.items():
        if name not in existing:
            try:
                await db.create_collection(name)
            except Exception as exc:  # another instance created it first
                if "already exists" not in str(exc).lower():
                    raise
        # Only the missing ones, one at a time: FerretDB v1 panics on a createIndexes of several
        # when some exist already, which made every restart on an existing database fail.
        present = {index["name"] async for index in await db[name].list_indexes()}
        for index in indexes:
            if index.document["name"] not in present:
                await db[name].create_indexes([index])
    if await db[d.SCHEMA_MARKS].find_one({"_id": _LISTED}) is None:
        await _backfill_listing(db)
        await mark_listed(db)


async def mark_listed(db: AsyncDatabase[Doc]) -> None:
    """Record that the listing holds every active contact (a loader that wrote the entries itself)."""
    with contextlib.suppress(DuplicateKeyError):
        await db[d.SCHEMA_MARKS].insert_one({"_id": _LISTED, "tm_create": datetime.now(UTC)})


async def _backfill_listing(db: AsyncDatabase[Doc]) -> None:
    """One pass over the contacts (once per database): an entry for every active one."""
    batch: list[Contact] = []
    fields = {"_id": True, "customer_id": True, "tm_create": True, "tm_delete": True}
    async for doc in db[d.CONTACTS].find({}, fields):
        if doc.get("tm_delete") is None:
            batch.append(Contact(doc["_id"], doc["customer_id"], "", parse_timestamp(doc["tm_create"])))
        if len(batch) >= 1000:
            await insert_entries(db[d.CONTACT_LIST], batch)
            batch.clear()
    await insert_entries(db[d.CONTACT_LIST], batch)


def make_client(url: str, *, timeout_ms: int = 5000) -> AsyncMongoClient[Doc]:
    return AsyncMongoClient(
        url, tz_aware=True, serverSelectionTimeoutMS=timeout_ms, appname="contact-service"
    )
