"""The broker side of operations: consumer groups, their offsets, and reading a topic whole."""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from service.adapters.kafka import PartitionOffsets, partition_offsets, topic_partitions
from service.compat import group_state, start_consumer
from service.config import Settings


@dataclass(frozen=True)
class GroupOffsets:
    group: str
    topic: str
    state: str
    members: int
    partitions: list[PartitionOffsets]

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


Target = tuple[Literal["earliest", "latest", "datetime", "offset", "shift"], Any]


class Cluster:
    """One admin client and one group-less consumer, for as long as an operation runs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.admin = AIOKafkaAdminClient(**settings.kafka_options(), client_id="contact-service-ops")
        self.consumer = AIOKafkaConsumer(
            **settings.kafka_options(), client_id="contact-service-ops", enable_auto_commit=False
        )

    async def __aenter__(self) -> "Cluster":
        await self.admin.start()
        await start_consumer(self.consumer)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def partitions(self, topic: str) -> list[TopicPartition]:
        return await topic_partitions(self.consumer, topic)

    async def offsets(self, group: str, topic: str) -> GroupOffsets:
        state, members = await group_state(self.admin, group)  # first: it waits for a coordinator
        rows = await partition_offsets(self.admin, self.consumer, group=group, topic=topic)
        return GroupOffsets(group, topic, state, members, rows)

    async def targets(self, now: GroupOffsets, target: Target) -> dict[int, int]:
        """Where each partition of ``now`` would be moved to: always within [start, end]."""
        kind, value = target
        moved: dict[int, int] = {}
        stamps: dict[TopicPartition, Any] = {}
        if kind == "datetime":
            assert isinstance(value, datetime)
            wanted = {
                TopicPartition(now.topic, p.partition): int(value.timestamp() * 1000) for p in now.partitions
            }
            stamps = await self.consumer.offsets_for_times(wanted)
        for p in now.partitions:
            if kind == "earliest":
                offset = p.start
            elif kind == "latest":
                offset = p.end
            elif kind == "offset":
                offset = int(value)
            elif kind == "shift":
                offset = (p.start if p.committed is None else p.committed) + int(value)
            else:
                found = stamps.get(TopicPartition(now.topic, p.partition))
                offset = p.end if found is None else found.offset
            moved[p.partition] = min(max(offset, p.start), p.end)
        return moved

    async def commit(self, group: str, topic: str, offsets: dict[int, int]) -> None:
        """Commit ``offsets`` for ``group``, which must have no live members (the broker refuses
        a commit from outside a live generation)."""
        committer = AIOKafkaConsumer(
            **self.settings.kafka_options(),
            group_id=group,
            enable_auto_commit=False,
            client_id="contact-service-ops",
        )
        await start_consumer(committer)
        try:
            committer.assign([TopicPartition(topic, p) for p in offsets])
            await committer.commit(
                {TopicPartition(topic, p): OffsetAndMetadata(o, "ops replay") for p, o in offsets.items()}
            )
        finally:
            await committer.stop()

    async def read(self, topic: str) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
        """Every record on ``topic`` now, from the earliest kept to the end as it was at the start."""
        partitions = await self.partitions(topic)
        if not partitions:
            return  # no such topic yet: nothing on it
        reader = AIOKafkaConsumer(
            **self.settings.kafka_options(),
            enable_auto_commit=False,
            client_id="contact-service-ops",
        )
        await start_consumer(reader)
        try:
            reader.assign(partitions)
            starts = await reader.beginning_offsets(partitions)
            ends = await reader.end_offsets(partitions)
            for tp, offset in starts.items():
                reader.seek(tp, offset)  # explicit: a seek_to_beginning races the default reset
            left = {tp for tp in partitions if ends[tp] > starts[tp]}
            while left:
                batches = await reader.getmany(*left, timeout_ms=1000)
                for tp, records in batches.items():
                    for record in records:
                        if record.offset < ends[tp]:
                            yield record
                    if await reader.position(tp) >= ends[tp]:
                        left.discard(tp)
        finally:
            with contextlib.suppress(Exception):
                await reader.stop()
