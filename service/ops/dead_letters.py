"""Dead letters as operators see them, and their redrive to the topic they came from.

A redrive sends the original key, value and headers (byte for byte) back to the source topic and
records each dead letter it sent in the store, so a second run sends nothing again. The handlers
are idempotent per command_id / CRM version, so a redrive cut short and run again applies each
message at most once.
"""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from contracts import headers as h
from contracts import topics
from service.entrypoints.dead_letters import original_headers
from service.ops.kafka import Cluster

REDRIVES = "dead_letter_redrives"
"""One document per dead letter redriven, keyed ``<dead-letter topic>|<partition>|<offset>``."""


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    at: datetime
    reason: str
    message: str
    field: str
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    group: str
    attempts: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    """The original message's headers, as they were."""

    @property
    def id(self) -> str:
        return f"{self.partition}:{self.offset}"

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "reason": self.reason,
            "message": self.message,
            "field": self.field,
            "source": f"{self.source_topic}[{self.source_partition}]@{self.source_offset}",
            "group": self.group,
            "attempts": self.attempts,
        }


def parse(record: ConsumerRecord[bytes, bytes]) -> DeadLetter:
    found = {k: v or b"" for k, v in record.headers or ()}

    def text(name: str) -> str:
        return found.get(name, b"").decode("utf-8", "replace")

    def number(binary: str, legacy: str) -> int | None:
        if binary in found and len(found[binary]) in (4, 8):
            return int.from_bytes(found[binary], "big", signed=True)
        return int(text(legacy)) if text(legacy).lstrip("-").isdigit() else None

    return DeadLetter(
        partition=record.partition,
        offset=record.offset,
        at=datetime.fromtimestamp(record.timestamp / 1000, UTC),
        reason=text(h.DLQ_REASON),
        message=text(h.DLQ_MESSAGE),
        field=text(h.DLQ_FIELD),
        source_topic=text(h.DLT_ORIGINAL_TOPIC) or text(h.DLQ_SOURCE_TOPIC),
        source_partition=number(h.DLT_ORIGINAL_PARTITION, h.DLQ_SOURCE_PARTITION),
        source_offset=number(h.DLT_ORIGINAL_OFFSET, h.DLQ_SOURCE_OFFSET),
        group=text(h.DLT_ORIGINAL_CONSUMER_GROUP),
        attempts=number(h.DELIVERY_ATTEMPT, h.DELIVERY_ATTEMPT) or 1,
        key=record.key,
        value=record.value or b"",
        headers=original_headers(record.headers),
    )


@dataclass(frozen=True)
class Filter:
    reason: str | None = None
    source_topic: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __call__(self, letter: DeadLetter) -> bool:
        return (
            (self.reason is None or letter.reason == self.reason)
            and (self.source_topic is None or self.source_topic in letter.source_topic)
            and (self.since is None or letter.at >= self.since)
            and (self.until is None or letter.at <= self.until)
        )


async def dead_letters(cluster: Cluster, keep: Filter) -> AsyncIterator[DeadLetter]:
    async for record in cluster.read(cluster.settings.topic(topics.DEAD_LETTERS)):
        letter = parse(record)
        if keep(letter):
            yield letter


class Redrives:
    """What was redriven, in the store: the guard that makes a second redrive send nothing."""

    def __init__(self, db: AsyncDatabase[dict[str, Any]], dead_letter_topic: str) -> None:
        self._done = db[REDRIVES]
        self._topic = dead_letter_topic

    def _id(self, letter: DeadLetter) -> str:
        return f"{self._topic}|{letter.partition}|{letter.offset}"

    async def done(self, letter: DeadLetter) -> bool:
        return await self._done.find_one({"_id": self._id(letter)}) is not None

    async def record(self, letter: DeadLetter, *, sent_to: str) -> None:
        doc = {"_id": self._id(letter), "sent_to": sent_to, "reason": letter.reason, "at": datetime.now(UTC)}
        # Recorded already by a run that stopped before it could say so: the same redrive.
        with contextlib.suppress(DuplicateKeyError):
            await self._done.insert_one(doc)


async def redrive(letter: DeadLetter, *, producer: AIOKafkaProducer, redrives: Redrives) -> bool:
    """Send ``letter`` back to its source topic unless it was before; True when sent now."""
    if await redrives.done(letter):
        return False
    await producer.send_and_wait(letter.source_topic, letter.value, key=letter.key, headers=letter.headers)
    await redrives.record(letter, sent_to=letter.source_topic)
    return True
