"""Long work keeps its consumer in the group, and its partitions until it is done.

Kafka drops a consumer from its group when it goes ``max_poll_interval_ms`` without polling, and
hands its partitions to another member, which then processes the same message again. A bulk of
1,000 items against a slow store, or a large CRM sync batch, can take that long. The documented
remedy is to pause the assigned partitions and keep polling while the work goes on: a poll of
paused partitions returns nothing, moves no position, and counts as a poll. Records fetched
before the pause are refetched from the unchanged position after it.

aiokafka rebalances in the background, while a batch is still being applied: without a listener
that waits, the group hands the batch's partition to another member, which applies the same
records at the same time, and the first member's commit then fails. ``BetweenBatches`` makes a
rebalance wait for the batch in hand (applied and committed, or sought back), as a poll loop
that rebalances only inside ``poll`` would.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition

log = logging.getLogger("contact_service.polling")


@contextlib.asynccontextmanager
async def keep_polling(consumer: Any, *, every: float) -> AsyncIterator[None]:
    """While the body runs past ``every`` seconds, poll ``consumer`` (an AIOKafkaConsumer, or None
    when there is none to keep) every ``every`` seconds with its partitions paused."""
    if consumer is None:
        yield
        return
    poller = asyncio.create_task(_poll_paused(consumer, every=every))
    try:
        yield
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller


async def _poll_paused(consumer: Any, *, every: float) -> None:
    await asyncio.sleep(every)  # most work ends long before: no pause at all
    paused = set(consumer.assignment()) - set(consumer.paused())
    consumer.pause(*paused)
    log.info("long work: polling %d paused partitions every %.1fs", len(paused), every)
    try:
        while True:
            if paused:
                with contextlib.suppress(Exception):  # a failed poll is retried at the next turn
                    await consumer.getmany(*paused, timeout_ms=int(every * 1000))
            else:
                await asyncio.sleep(every)
    finally:
        consumer.resume(*(paused & set(consumer.assignment())))


class BetweenBatches(ConsumerRebalanceListener):  # type: ignore[misc]
    """A rebalance listener that lets partitions go only between batches.

    aiokafka awaits ``on_partitions_revoked`` before it rejoins the group and keeps heartbeating
    meanwhile; the group waits for the rejoin up to the consumer's ``rebalance_timeout_ms``
    (``KAFKA_REBALANCE_TIMEOUT_MS``; aiokafka's default, the session timeout of 10 s, is shorter
    than a large batch). A member that took longer would be dropped and its batch applied again.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Around the work on one polled batch, up to its acknowledgement (one at a time: a
        subscriber's consume loop takes its next batch only after that)."""
        self._idle.clear()
        try:
            yield
        finally:
            self._idle.set()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if not self._idle.is_set():
            log.info("%s: rebalance waits for the batch in hand (%d partitions)", self._name, len(revoked))
            await self._idle.wait()
            log.info("%s: batch done, partitions handed over", self._name)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass
