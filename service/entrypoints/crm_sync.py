"""CRM sync ingestion: batches of connector messages, applied in bulk, failures reported per item."""

import asyncio
from typing import Any

from faststream.kafka import KafkaRouter
from faststream.middlewares import AckPolicy
from pydantic import ValidationError

from contracts import topics
from contracts.errors import Error
from contracts.sync import SYNC_ADAPTER, SyncMessage, SyncResult, sync_key
from service.compat import KafkaPublisher, raw_batch_subscriber, subscriber_consumer, while_consuming
from service.config import Settings
from service.entrypoints.dead_letters import DeadLetters
from service.entrypoints.failures import bad_input
from service.entrypoints.metrics import Metrics
from service.entrypoints.polling import BetweenBatches, keep_polling
from service.service_layer.context import Services
from service.service_layer.sync import apply_sync_batch


def build_router(
    *,
    settings: Settings,
    svc: Services,
    dead_letters: DeadLetters,
    results: KafkaPublisher,
    metrics: Metrics,
    router: KafkaRouter,
) -> None:
    handover = BetweenBatches(topics.CRM_SYNC)
    subscriber = raw_batch_subscriber(
        router,
        settings.topic(topics.CRM_SYNC),
        listener=handover,
        max_poll_interval_ms=settings.kafka_max_poll_interval_ms,
        rebalance_timeout_ms=settings.kafka_rebalance_timeout_ms,
        max_records=settings.sync_batch_size,
        group_id=settings.group(topics.CRM_SYNC),
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        title="crm-sync",
        description=(
            "Upserts and deletes from CRM sync connectors (contracts.sync: crm_contact_upserted, "
            "crm_contact_deleted), keyed by customer_id/external_id. Consumed in batches and written "
            "in bulk; each external contact's newest state (by crm_version, else crm_updated_at) is "
            "applied once, anything older is counted and ignored, so replays change nothing. Items "
            "that cannot be applied are reported on contacts.sync-results.v1; unparseable messages "
            "go to the dead-letter topic. Offsets are committed after the store writes and events."
        ),
    )
    while_consuming(subscriber, handover.batch)

    batches = SyncBatches(
        svc=svc, dead_letters=dead_letters, results=results, metrics=metrics, lanes=settings.sync_lanes
    )

    @subscriber
    async def on_sync(records: list[Any]) -> None:
        async with keep_polling(subscriber_consumer(subscriber), every=settings.poll_while_busy_seconds):
            with metrics.sync_batch_seconds.time():
                await batches.apply(records)


class SyncBatches:
    """Parses a poll's sync messages, applies them in bulk, and reports the items that failed."""

    def __init__(
        self,
        *,
        svc: Services,
        dead_letters: DeadLetters,
        results: KafkaPublisher,
        metrics: Metrics,
        lanes: int,
    ) -> None:
        self._svc, self._dead_letters, self._results = svc, dead_letters, results
        self._metrics, self._lanes = metrics, lanes

    async def apply(self, records: list[Any]) -> None:
        parsed: dict[int, SyncMessage] = {}
        for position, record in enumerate(records):
            try:
                parsed[position] = SYNC_ADAPTER.validate_json(record.value or b"")
            except ValidationError as exc:
                await self._dead_letters.send(record, bad_input(exc), exc=exc)
                self._metrics.sync_messages.labels("dead_lettered").inc()
        report = await apply_sync_batch(list(parsed.items()), svc=self._svc, lanes=self._lanes)
        await asyncio.gather(
            *[
                await self._report(records[position], parsed[position], error)
                for position, error in sorted(report.failed.items())
            ]
        )
        outcomes = self._metrics.sync_messages
        outcomes.labels("applied").inc(report.applied)
        outcomes.labels("stale").inc(report.stale)
        outcomes.labels("failed").inc(len(report.failed))

    async def _report(self, record: Any, item: SyncMessage, error: Error) -> "asyncio.Future[Any]":
        """Publishes the item's failure on the results topic; the returned future is its ack."""
        result = SyncResult(
            customer_id=item.customer_id,
            crm=item.crm,
            external_id=item.external_id,
            order=item.order(),
            error=error,
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            occurred_at=self._svc.clock.now(),
        )
        key = sync_key(item.customer_id, item.external_id)
        sent: asyncio.Future[Any] = await self._results.publish(
            result.model_dump(mode="json"), key=key, no_confirm=True
        )
        return sent
