"""Kafka adapters: the event publisher, and the consumer lag sampler."""

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from service import tracing
from service.compat import KafkaPublisher, cluster_metadata, start_consumer
from service.service_layer.ports import JsonDict

log = logging.getLogger("contact_service")


class KafkaEventPublisher:
    """Publishes contact-changed events keyed by contact id and waits for every broker ack."""

    def __init__(self, publisher: KafkaPublisher) -> None:
        self._publisher = publisher

    async def publish(self, *, events: Sequence[JsonDict]) -> None:
        # Send all, then await all: one round trip for a batch, order kept per partition by the producer.
        pending = []
        for event in events:
            with tracing.as_cause_of(event):  # the event continues the trace of the command behind it
                sent = await self._publisher.publish(
                    event,
                    key=event["contact_id"].encode(),
                    headers={"event_type": event["type"], "event_id": event["event_id"]},
                    no_confirm=True,
                )
            pending.append(sent)
        await asyncio.gather(*pending)


LagReport = Callable[[str, str, int, int], None]
"""Called with (group, topic, partition, lag) for every partition sampled."""


async def sample_lag_forever(
    *, client_options: dict[str, Any], groups: dict[str, str], report: LagReport, every: float = 15.0
) -> None:
    """Each consumer group's lag per partition (end offset minus committed offset), every ``every``
    seconds, from the broker: what an outside lag exporter would show, without one."""
    admin = AIOKafkaAdminClient(**client_options, client_id="contact-service-lag")
    consumer = AIOKafkaConsumer(**client_options, client_id="contact-service-lag", enable_auto_commit=False)
    await admin.start()
    await start_consumer(consumer)
    try:
        while True:
            try:
                for topic, group in groups.items():
                    await _sample(admin, consumer, topic, group, report)
            except Exception:
                log.warning("could not sample consumer lag; trying again in %.0fs", every, exc_info=True)
            await asyncio.sleep(every)
    finally:
        await consumer.stop()
        await admin.close()


async def _sample(
    admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, topic: str, group: str, report: LagReport
) -> None:
    for p in await partition_offsets(admin, consumer, group=group, topic=topic):
        report(group, topic, p.partition, p.lag)


@dataclass(frozen=True)
class PartitionOffsets:
    partition: int
    start: int
    """The earliest offset still on the broker."""
    end: int
    committed: int | None
    """The group's committed offset; None when it never committed on this partition."""

    @property
    def lag(self) -> int:
        """Messages the group has still to consume (from the earliest kept, when it never committed)."""
        return max(0, self.end - (self.start if self.committed is None else self.committed))


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions as the broker has them now (none when the topic does not exist)."""
    found = (await cluster_metadata(consumer)).partitions_for_topic(topic) or set()
    return [TopicPartition(topic, p) for p in sorted(found)]


async def partition_offsets(
    admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, *, group: str, topic: str
) -> list[PartitionOffsets]:
    """For each partition of ``topic``: its earliest and end offsets, and ``group``'s committed one."""
    partitions = await topic_partitions(consumer, topic)
    if not partitions:
        return []
    starts = await consumer.beginning_offsets(partitions)
    ends = await consumer.end_offsets(partitions)
    committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
    return [
        PartitionOffsets(tp.partition, starts[tp], ends[tp], _committed(committed.get(tp)))
        for tp in partitions
    ]


def _committed(found: OffsetAndMetadata | None) -> int | None:
    return None if found is None or found.offset < 0 else found.offset
