"""The command log: each command's outcome, by customer and command id."""

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from service.adapters.mongo.documents import COMMAND_LOG, Doc, duplicates, key, log_doc, logged_outcome
from service.service_layer.ports import LoggedOutcome, Outcome


class MongoCommandLog:
    """One document per command: its outcome, the events' contacts stored once (in the reply).

    Whether the events were published is a small document of its own: marking a bulk command's
    entry (a reply of up to 1,000 contacts) would rewrite the whole entry on stores that rewrite
    documents on update (FerretDB does; docs/measurements.md).
    """

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self._log: AsyncCollection[Doc] = db[COMMAND_LOG]

    async def get(self, *, customer_id: str, command_id: str) -> LoggedOutcome | None:
        doc = await self._log.find_one({"_id": key(customer_id, command_id)})
        if doc is None:
            return None
        published = bool(doc.get("published")) or (
            await self._log.find_one({"_id": key(customer_id, command_id, _PUBLISHED)}) is not None
        )
        return LoggedOutcome(logged_outcome(doc), published)

    async def record(self, *, outcome: Outcome) -> None:
        await self._log.update_one(
            {"_id": key(outcome.customer_id, outcome.command_id)},
            {"$setOnInsert": {**log_doc(outcome), "tm_create": datetime.now(UTC)}},
            upsert=True,
        )

    async def record_many(self, *, outcomes: Sequence[Outcome], published: bool) -> None:
        now = datetime.now(UTC)
        docs = [
            {
                "_id": key(o.customer_id, o.command_id),
                **log_doc(o),
                "tm_create": now,
                "published": published,
            }
            for o in outcomes
        ]
        try:
            await self._log.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            duplicates(exc, [d["_id"] for d in docs])  # recorded before: the first record stands

    async def mark_published(self, *, customer_id: str, command_id: str) -> None:
        with contextlib.suppress(DuplicateKeyError):
            await self._log.insert_one(
                {"_id": key(customer_id, command_id, _PUBLISHED), "tm_create": datetime.now(UTC)}
            )


_PUBLISHED = "published"
