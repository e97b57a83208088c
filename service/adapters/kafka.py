"""Kafka adapters: the event publisher."""

import asyncio
from collections.abc import Sequence

from service.compat import KafkaPublisher
from service.service_layer.ports import JsonDict


class KafkaEventPublisher:
    """Publishes contact-changed events keyed by contact id and waits for every broker ack."""

    def __init__(self, publisher: KafkaPublisher) -> None:
        self._publisher = publisher

    async def publish(self, *, events: Sequence[JsonDict]) -> None:
        # Send all, then await all: one round trip for a batch, order kept per partition by the producer.
        pending = [
            await self._publisher.publish(
                event,
                key=event["contact_id"].encode(),
                headers={"event_type": event["type"], "event_id": event["event_id"]},
                no_confirm=True,
            )
            for event in events
        ]
        await asyncio.gather(*pending)
