"""Address claims: one document per (customer, phone / email / external id), naming its holder."""

import asyncio
from collections.abc import Sequence
from datetime import datetime

from pymongo import DeleteOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from service.adapters.mongo.documents import ADDRESSES, Doc, duplicates, key
from service.domain.model import Address
from service.service_layer.ports import FREE, Claim


class MongoAddressBook:
    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._claims: AsyncCollection[Doc] = db[ADDRESSES]

    @staticmethod
    def _id(customer_id: str, address: Address) -> str:
        return key(customer_id, address.kind, address.value)

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
            taken_ids = duplicates(exc, [d["_id"] for d in docs])
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
