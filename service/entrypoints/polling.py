"""Long work keeps its consumer in the group.

Kafka drops a consumer from its group when it goes ``max_poll_interval_ms`` without polling, and
hands its partitions to another member, which then processes the same message again. A bulk of
1,000 items against a slow store, or a large CRM sync batch, can take that long. The documented
remedy is to pause the assigned partitions and keep polling while the work goes on: a poll of
paused partitions returns nothing, moves no position, and counts as a poll. Records fetched
before the pause are refetched from the unchanged position after it.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

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
