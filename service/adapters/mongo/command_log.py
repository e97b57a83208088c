"""The command log: each command's outcome, by customer and command id."""

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from service.adapters.mongo.documents import COMMAND_LOG, Doc, duplicates, key, log_doc, logged_outcome
from service.service_layer.ports import LoggedOutcome, Outcome

log = logging.getLogger("contact_service")


@dataclass(frozen=True)
class LogSize:
    entries: int
    oldest: datetime | None


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

    async def size(self) -> LogSize:
        """Entries (publish marks included) and the oldest one's time."""
        entries = await self._log.count_documents({})
        first = await self._log.find_one({}, {"tm_create": True}, sort=[("tm_create", ASCENDING)])
        return LogSize(entries, None if first is None else first.get("tm_create"))

    async def prune(self, *, before: datetime) -> int:
        """Forget the commands recorded before ``before``; how many entries went."""
        result = await self._log.delete_many({"tm_create": {"$lt": before}})
        return result.deleted_count

    async def prune_forever(self, *, retention: timedelta) -> None:
        """Keep the log within its retention: prune every tenth of it (at most hourly)."""
        every = min(retention / 10, timedelta(hours=1)).total_seconds()
        while True:
            await asyncio.sleep(every)
            try:
                gone = await self.prune(before=datetime.now(UTC) - retention)
            except Exception:
                log.exception("could not prune the command log; trying again in %.0fs", every)
                continue
            if gone:
                log.info("command log: %d entries past the %s retention pruned", gone, retention)


_PUBLISHED = "published"
