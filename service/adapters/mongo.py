"""MongoDB adapters (PyMongo's async API) for the contact store, address claims and command log.

Every hot read is an exact ``_id`` match: the only filter every MongoDB-wire store answers from an
index (FerretDB's SQLite backend pushes down nothing else). Claims and log entries therefore carry
composite string keys; other indexes serve MongoDB where lists and CRM lookups need them.
"""

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence, Set
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, DeleteOne, IndexModel, ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from contracts.models import format_timestamp, parse_timestamp
from service.domain.model import Address, Contact
from service.service_layer.mapping import contact_from_json, contact_json
from service.service_layer.ports import FREE, Claim, LoggedOutcome, Outcome, StoredContact, SyncState

Doc = dict[str, Any]

CONTACTS = "contacts"
ADDRESSES = "contact_addresses"
COMMAND_LOG = "processed_commands"
SYNC_STATE = "crm_sync_state"
CONTACT_LIST = "contact_list"
SCHEMA_MARKS = "schema_marks"


def _key(*parts: str) -> str:
    """An unambiguous composite key (JSON array), whatever characters the parts hold."""
    return json.dumps(parts, separators=(",", ":"), ensure_ascii=False)


# --- documents ---


def contact_to_doc(contact: Contact, outcome: Outcome | None) -> Doc:
    """The contact's wire form under ``_id``, with its version and the outcome that made it."""
    own = contact_json(contact)
    doc: Doc = {"_id": contact.id}
    doc.update((k, v) for k, v in own.items() if k != "id")
    doc["version"] = contact.version
    doc["last_outcome"] = None if outcome is None else _OwnRefs(own).compact(outcome_to_doc(outcome))
    return doc


def contact_from_doc(doc: Doc) -> Contact:
    return contact_from_json({**doc, "id": doc["_id"]}, version=doc.get("version", 1))


def _stored(doc: Doc) -> StoredContact:
    contact = contact_from_doc(doc)
    last = doc.get("last_outcome")
    outcome = None if not last else outcome_from_doc(_OwnRefs(contact_json(contact)).inflate(last))
    return StoredContact(contact=contact, last_outcome=outcome)


def outcome_to_doc(outcome: Outcome) -> Doc:
    return {
        "customer_id": outcome.customer_id,
        "command_id": outcome.command_id,
        "command_type": outcome.command_type,
        "reply": outcome.reply,
        "events": outcome.events,
    }


def outcome_from_doc(doc: Doc) -> Outcome:
    return Outcome(
        customer_id=doc["customer_id"],
        command_id=doc["command_id"],
        command_type=doc["command_type"],
        reply=doc["reply"],
        events=list(doc.get("events", [])),
    )


class _Refs:
    """Contacts a document holds anyway, by the marker that stands for each.

    An outcome names whole contacts in its reply and in each event; stored verbatim, a contact
    would be held several times over and every read would pay for it. A copy equal to a contact
    the document already holds is stored as that contact's marker, and put back on read; a copy
    of any other state stays verbatim.
    """

    reply_sites: frozenset[str] = frozenset()  # the reply's keys whose value may be a marker

    def __init__(self, held: dict[str, Doc]) -> None:
        self._held = held
        self._by_id = {c["id"]: marker for marker, c in held.items()}

    def _ref(self, value: Any) -> Any:
        key = value.get("id") if isinstance(value, dict) else None
        marker = self._by_id.get(key) if isinstance(key, str) else None
        return marker if marker is not None and self._held[marker] == value else value

    def _deref(self, value: Any) -> Any:
        return self._held.get(value, value) if isinstance(value, str) else value

    def compact(self, outcome: Doc) -> Doc:
        return self._map(outcome, self._ref)

    def inflate(self, outcome: Doc) -> Doc:
        return self._map(outcome, self._deref)

    def _map(self, outcome: Doc, swap: Callable[[Any], Any]) -> Doc:
        reply = {k: swap(v) if k in self.reply_sites else v for k, v in outcome["reply"].items()}
        events = [
            {**e, "contact": swap(e["contact"])} if "contact" in e else e for e in outcome.get("events", [])
        ]
        return {**outcome, "reply": reply, "events": events}


class _OwnRefs(_Refs):
    """In a contact's document: its own state, which the outcome's reply names too (a command's
    ``result``, a bulk or sync item's ``contact``)."""

    reply_sites = frozenset({"result", "contact"})

    def __init__(self, own: Doc) -> None:
        super().__init__({"=contact": own})


class _ReplyRefs(_Refs):
    """In a command log entry: the contacts of the reply itself, which the events name again."""

    def __init__(self, reply: Doc) -> None:
        found = [reply.get("result"), *(reply.get("contacts") or [])]
        named = [c for c in found if isinstance(c, dict) and isinstance(c.get("id"), str)]
        super().__init__({f"=reply:{c['id']}": c for c in named})


# --- repositories ---


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
        return None if doc is None or doc.get("customer_id") != customer_id else _stored(doc)

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
        await _insert_entries(self._list, [contact])
        try:
            await self._contacts.insert_one(contact_to_doc(contact, outcome))
        except DuplicateKeyError:
            return False
        return True

    async def insert_many(self, *, items: Sequence[tuple[Contact, Outcome]]) -> set[str]:
        if not items:
            return set()
        await _insert_entries(self._list, [contact for contact, _ in items])
        docs = [contact_to_doc(contact, outcome) for contact, outcome in items]
        try:
            await self._contacts.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            return _duplicates(exc, [d["_id"] for d in docs])
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
                if (
                    contact is not None
                    and not contact.is_deleted
                    and format_timestamp(contact.tm_create) == stamp
                ):
                    page.append(contact)
            if len(keys) < wanted:
                break
        return page


async def _insert_entries(listing: AsyncCollection[Doc], contacts: Sequence[Contact]) -> None:
    entries = [{"_id": list_key(c), "contact_id": c.id} for c in contacts]
    if not entries:
        return
    try:
        await listing.insert_many(entries, ordered=False)
    except BulkWriteError as exc:
        _duplicates(exc, [e["_id"] for e in entries])  # written by an earlier delivery: fine


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


class MongoAddressBook:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._claims: AsyncCollection[Doc] = db[ADDRESSES]

    @staticmethod
    def _id(customer_id: str, address: Address) -> str:
        return _key(customer_id, address.kind, address.value)

    @classmethod
    def claim_doc(cls, customer_id: str, address: Address, contact_id: str, now: datetime) -> Doc:
        return {
            "_id": cls._id(customer_id, address),
            "customer_id": customer_id,
            "kind": address.kind,
            "value": address.value,
            "contact_id": contact_id,
            "claimed_at": now,
        }

    async def owner(self, *, customer_id: str, address: Address) -> Claim | None:
        doc = await self._claims.find_one({"_id": self._id(customer_id, address)})
        return None if doc is None else Claim(doc["contact_id"], doc["claimed_at"])

    async def owners(self, *, customer_id: str, addresses: Sequence[Address]) -> dict[Address, Claim]:
        found = await asyncio.gather(*(self.owner(customer_id=customer_id, address=a) for a in addresses))
        return {a: c for a, c in zip(addresses, found, strict=True) if c is not None}

    async def claim(
        self, *, customer_id: str, address: Address, contact_id: str, now: datetime
    ) -> Claim | None:
        try:
            await self._claims.insert_one(self.claim_doc(customer_id, address, contact_id, now))
        except DuplicateKeyError:
            existing = await self.owner(customer_id=customer_id, address=address)
            # Released between our insert and our read: report it taken; the caller retries.
            return existing or Claim("", now)
        return None

    async def claim_many(
        self, *, customer_id: str, wanted: Sequence[tuple[Address, str]], now: datetime
    ) -> dict[Address, Claim]:
        if not wanted:
            return {}
        docs = [self.claim_doc(customer_id, address, contact_id, now) for address, contact_id in wanted]
        try:
            await self._claims.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            taken_ids = _duplicates(exc, [d["_id"] for d in docs])
            taken = [
                address for (address, _), doc in zip(wanted, docs, strict=True) if doc["_id"] in taken_ids
            ]
            owners = await self.owners(customer_id=customer_id, addresses=taken)
            # Released since our insert failed: report it taken anyway; the caller retries singly.
            return {address: owners.get(address) or Claim("", now) for address in taken}
        return {}

    async def take_over(
        self, *, customer_id: str, address: Address, stale: Claim, contact_id: str, now: datetime
    ) -> bool:
        result = await self._claims.update_one(
            {
                "_id": self._id(customer_id, address),
                "contact_id": stale.contact_id,
                "claimed_at": stale.claimed_at,
            },
            {"$set": {"contact_id": contact_id, "claimed_at": now}},
        )
        return result.modified_count == 1

    async def release(
        self, *, customer_id: str, address: Address, contact_id: str, keep_free: bool = False
    ) -> None:
        await self.release_many(customer_id=customer_id, released=[(address, contact_id, keep_free)])

    async def release_many(self, *, customer_id: str, released: Sequence[tuple[Address, str, bool]]) -> None:
        # One write each, filtered on the exact _id and the owner: atomic, and indexed on every store.
        writes: list[DeleteOne | UpdateOne] = [
            UpdateOne({"_id": self._id(customer_id, a), "contact_id": owner}, {"$set": {"contact_id": FREE}})
            if keep_free
            else DeleteOne({"_id": self._id(customer_id, a), "contact_id": owner})
            for a, owner, keep_free in released
        ]
        if writes:
            await self._claims.bulk_write(writes, ordered=False)


class MongoCommandLog:
    """One document per command: its outcome, the events' contacts stored once (in the reply).

    Whether the events were published is a small document of its own: marking a bulk command's
    entry (a reply of up to 1,000 contacts) would rewrite the whole entry on stores that rewrite
    documents on update (FerretDB: about a second at 1,000 contacts).
    """

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._log: AsyncCollection[Doc] = db[COMMAND_LOG]

    async def get(self, *, customer_id: str, command_id: str) -> LoggedOutcome | None:
        doc = await self._log.find_one({"_id": _key(customer_id, command_id)})
        if doc is None:
            return None
        published = bool(doc.get("published")) or (
            await self._log.find_one({"_id": _key(customer_id, command_id, _PUBLISHED)}) is not None
        )
        return LoggedOutcome(outcome_from_doc(_ReplyRefs(doc["reply"]).inflate(doc)), published)

    async def record(self, *, outcome: Outcome) -> None:
        await self._log.update_one(
            {"_id": _key(outcome.customer_id, outcome.command_id)},
            {"$setOnInsert": {**_log_doc(outcome), "tm_create": datetime.now(UTC)}},
            upsert=True,
        )

    async def record_many(self, *, outcomes: Sequence[Outcome], published: bool) -> None:
        now = datetime.now(UTC)
        docs = [
            {
                "_id": _key(o.customer_id, o.command_id),
                **_log_doc(o),
                "tm_create": now,
                "published": published,
            }
            for o in outcomes
        ]
        try:
            await self._log.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            _duplicates(exc, [d["_id"] for d in docs])  # recorded before: the first record stands

    async def mark_published(self, *, customer_id: str, command_id: str) -> None:
        with contextlib.suppress(DuplicateKeyError):
            await self._log.insert_one(
                {"_id": _key(customer_id, command_id, _PUBLISHED), "tm_create": datetime.now(UTC)}
            )


_PUBLISHED = "published"


def _log_doc(outcome: Outcome) -> Doc:
    return _ReplyRefs(outcome.reply).compact(outcome_to_doc(outcome))


class MongoSyncStates:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._states: AsyncCollection[Doc] = db[SYNC_STATE]

    async def get_many(self, *, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], SyncState]:
        # Concurrent point reads by _id rather than $in: indexed on every store.
        docs = await asyncio.gather(*(self._states.find_one({"_id": _key(*k)}) for k in keys))
        return {
            key: SyncState(
                customer_id=doc["customer_id"],
                external_id=doc["external_id"],
                crm=doc["crm"],
                order=doc["order"],
                contact_id=doc["contact_id"],
                deleted=doc["deleted"],
            )
            for key, doc in zip(keys, docs, strict=True)
            if doc is not None and doc["customer_id"] == key[0]
        }

    async def put_many(
        self, *, states: Sequence[SyncState], existing: Set[tuple[str, str]] = frozenset()
    ) -> None:
        if not states:
            return
        docs = [
            {
                "_id": _key(s.customer_id, s.external_id),
                "customer_id": s.customer_id,
                "external_id": s.external_id,
                "crm": s.crm,
                "order": s.order,
                "contact_id": s.contact_id,
                "deleted": s.deleted,
            }
            for s in states
        ]
        # New keys (a CRM export) in one plain insert, the cheapest write on every store; the keys
        # known to exist, and those the insert finds existing, replaced by _id.
        known = {_key(*k) for k in existing}
        replaced = [d for d in docs if d["_id"] in known]
        inserted = [d for d in docs if d["_id"] not in known]
        if inserted:
            try:
                await self._states.insert_many(inserted, ordered=False)
            except BulkWriteError as exc:
                found = _duplicates(exc, [d["_id"] for d in inserted])
                replaced += [d for d in inserted if d["_id"] in found]
        if replaced:
            await self._states.bulk_write([ReplaceOne({"_id": d["_id"]}, d) for d in replaced], ordered=False)


def _duplicates(exc: BulkWriteError, ids: list[Any]) -> set[Any]:
    """The ids a bulk insert found existing; anything but duplicate keys is re-raised."""
    errors = exc.details.get("writeErrors", [])
    if any(e.get("code") != 11000 for e in errors) or exc.details.get("writeConcernErrors"):
        raise exc
    return {ids[e["index"]] for e in errors}


# --- setup ---

INDEXES: dict[str, list[IndexModel]] = {
    CONTACTS: [
        IndexModel([("customer_id", ASCENDING), ("external_id", ASCENDING)], name="customer_external_id"),
        # Diagnostics and ad-hoc queries by E.164 / email; lookups go through the claims' _id.
        IndexModel(
            [("customer_id", ASCENDING), ("phone_numbers.number_e164", ASCENDING)],
            name="customer_e164",
        ),
        IndexModel([("customer_id", ASCENDING), ("emails.address", ASCENDING)], name="customer_email"),
    ],
    ADDRESSES: [IndexModel([("contact_id", ASCENDING)], name="contact")],
    COMMAND_LOG: [],
    SYNC_STATE: [],
    CONTACT_LIST: [],  # read by _id range alone
    SCHEMA_MARKS: [],
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
    if await db[SCHEMA_MARKS].find_one({"_id": _LISTED}) is None:
        await _backfill_listing(db)
        await mark_listed(db)


async def mark_listed(db: AsyncDatabase[Doc]) -> None:
    """Record that the listing holds every active contact (a loader that wrote the entries itself)."""
    with contextlib.suppress(DuplicateKeyError):
        await db[SCHEMA_MARKS].insert_one({"_id": _LISTED, "tm_create": datetime.now(UTC)})


async def _backfill_listing(db: AsyncDatabase[Doc]) -> None:
    """One pass over the contacts (once per database): an entry for every active one."""
    batch: list[Contact] = []
    fields = {"_id": True, "customer_id": True, "tm_create": True, "tm_delete": True}
    async for doc in db[CONTACTS].find({}, fields):
        if doc.get("tm_delete") is None:
            batch.append(Contact(doc["_id"], doc["customer_id"], "", parse_timestamp(doc["tm_create"])))
        if len(batch) >= 1000:
            await _insert_entries(db[CONTACT_LIST], batch)
            batch.clear()
    await _insert_entries(db[CONTACT_LIST], batch)


def make_client(url: str, *, timeout_ms: int = 5000) -> AsyncMongoClient[Doc]:
    return AsyncMongoClient(
        url, tz_aware=True, serverSelectionTimeoutMS=timeout_ms, appname="contact-service"
    )
