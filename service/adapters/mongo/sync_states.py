"""CRM sync state: per (customer, external id), the newest CRM change applied."""

import asyncio
from collections.abc import Sequence, Set

from pymongo import ReplaceOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from service.adapters.mongo.documents import SYNC_STATE, Doc, duplicates, key
from service.service_layer.ports import SyncState


class MongoSyncStates:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._states: AsyncCollection[Doc] = db[SYNC_STATE]

    async def get_many(self, *, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], SyncState]:
        # Concurrent point reads by _id rather than $in: indexed on every store.
        docs = await asyncio.gather(*(self._states.find_one({"_id": key(*k)}) for k in keys))
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
                "_id": key(s.customer_id, s.external_id),
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
        known = {key(*k) for k in existing}
        replaced = [d for d in docs if d["_id"] in known]
        inserted = [d for d in docs if d["_id"] not in known]
        if inserted:
            try:
                await self._states.insert_many(inserted, ordered=False)
            except BulkWriteError as exc:
                found = duplicates(exc, [d["_id"] for d in inserted])
                replaced += [d for d in inserted if d["_id"] in found]
        if replaced:
            await self._states.bulk_write([ReplaceOne({"_id": d["_id"]}, d) for d in replaced], ordered=False)
