"""Contact commands, in batches: applied in order, then made durable and announced together, then
answered (if asked). The batch's offsets are committed after all of that."""

import asyncio
import logging
from typing import Annotated, Any

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaRouter
from faststream.middlewares import AckPolicy
from opentelemetry import trace
from pydantic import ValidationError, WithJsonSchema

from contracts import topics
from contracts.commands import COMMAND_ADAPTER, ContactCommand
from service import tracing
from service.compat import (
    one_record_schema,
    poll_again_at_once,
    raw_batch_subscriber,
    subscriber_consumer,
    while_consuming,
)
from service.config import Settings
from service.entrypoints.dead_letters import DeadLetters, reject
from service.entrypoints.failures import bad_input, gave_up, input_error, is_transient, retry_delay
from service.entrypoints.logs import log_context, record_fields
from service.entrypoints.polling import BetweenBatches, keep_polling
from service.entrypoints.replies import REQUEST_FETCH_MAX_WAIT_MS, Replier
from service.service_layer.batch import CommandBatch, Stopped
from service.service_layer.context import Services
from service.service_layer.ports import JsonDict

log = logging.getLogger("contact_service.commands")

Records = Annotated[list[Any], WithJsonSchema(one_record_schema(COMMAND_ADAPTER))]
"""A batch's raw records, each parsed on its own; documented as what one record carries."""
Answered = list[tuple[ConsumerRecord[Any, Any], JsonDict]]
Parsed = tuple[ConsumerRecord[Any, Any], ContactCommand]
Started = tuple[ConsumerRecord[Any, Any], ContactCommand, "asyncio.Task[JsonDict]"]


class Commands:
    """Applies a batch of command records; bad ones are rejected alone, failing ones retried alone."""

    def __init__(
        self,
        *,
        svc: Services,
        replier: Replier,
        dead_letters: DeadLetters,
        max_attempts: int,
        backoff_max: float,
    ) -> None:
        self._svc, self._replier, self._dead_letters = svc, replier, dead_letters
        self._max_attempts, self._backoff_max = max_attempts, backoff_max

    async def apply(self, records: list[ConsumerRecord[Any, Any]]) -> Answered:
        """Apply the batch; the replies to send, once everything is durable and announced."""
        pending: list[Parsed] = []
        for record in records:
            try:
                pending.append((record, COMMAND_ADAPTER.validate_json(record.value or b"")))
            except ValidationError as exc:
                await self._reject(record, exc)
        if not tracing.enabled():
            return await self._apply(pending)
        spans = {
            command.command_id: tracing.tracer.start_span(
                f"apply {command.type}",
                context=tracing.extract(record.headers),
                attributes={"contact.command_id": command.command_id, **_where(record)},
            )
            for record, command in pending
        }
        try:
            with tracing.causes({i: trace.set_span_in_context(span) for i, span in spans.items()}):
                return await self._apply(pending)
        finally:
            for span in spans.values():
                span.end()

    async def _apply(self, pending: list[Parsed]) -> Answered:
        answered: Answered = []
        while pending:
            done, pending = await self._round(pending)
            for record, command, task in done:
                failure = task.exception()
                reply: JsonDict | None
                if failure is None:
                    reply = task.result()
                else:
                    with log_context(**record_fields(record), command_id=command.command_id):
                        reply = await self._after_failure(record, command, failure)
                if reply is not None:
                    answered.append((record, reply))
        return answered

    async def _round(self, commands: list[Parsed]) -> tuple[list[Started], list[Parsed]]:
        """Start the commands in order until one fails; flush. The started ones, and the rest."""
        batch = CommandBatch(self._svc)
        batch.prefetch([command for _, command in commands])
        started: list[Started] = []
        try:
            for record, command in commands:
                with tracing.in_context_of(command.command_id):  # its handler's task inherits it
                    started.append((record, command, await batch.start(command)))
        except Stopped:
            pass
        finally:
            await batch.flush()  # what was applied is announced and logged, even when one failed
            await batch.close()
        return started, commands[len(started) :]

    async def _after_failure(
        self, record: ConsumerRecord[Any, Any], command: ContactCommand, exc: BaseException
    ) -> JsonDict | None:
        """The reply to a command that failed once, after retries; None when it was rejected or
        dead-lettered. A store or broker outage is raised: the batch is delivered again."""
        for attempt in range(1, self._max_attempts + 1):
            if is_transient(exc):
                raise exc
            if input_error(exc) is not None and isinstance(exc, Exception):
                await self._reject(record, exc)
                return None
            if attempt == self._max_attempts:
                break
            delay = retry_delay(attempt, self._backoff_max)
            log.warning(
                "attempt %d of %s failed (%r); again in %.1fs", attempt, command.command_id, exc, delay
            )
            await asyncio.sleep(delay)
            batch = CommandBatch(self._svc)
            try:
                reply = await batch.apply(command)
                await batch.flush()
                return reply
            except Exception as again:
                exc = again
        log.error("giving up on %s[%s]@%s: %r", record.topic, record.partition, record.offset, exc)
        await self._dead_letters.send(record, gave_up(exc), exc=exc, attempts=self._max_attempts)
        return None

    async def _reject(self, record: ConsumerRecord[Any, Any], exc: Exception) -> None:
        await reject(record, bad_input(exc), replier=self._replier, dead_letters=self._dead_letters, exc=exc)


def build_router(*, settings: Settings, commands: Commands, replier: Replier, router: KafkaRouter) -> None:
    handover = BetweenBatches(topics.COMMANDS)
    subscriber = raw_batch_subscriber(
        router,
        settings.topic(topics.COMMANDS),
        listener=handover,
        max_records=settings.command_batch_size,
        group_id=settings.group(topics.COMMANDS),
        fetch_max_wait_ms=REQUEST_FETCH_MAX_WAIT_MS,
        max_poll_interval_ms=settings.kafka_max_poll_interval_ms,
        rebalance_timeout_ms=settings.kafka_rebalance_timeout_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        no_reply=True,
        title="contact-commands",
        description=(
            "Create, update and soft-delete contacts; add, update and remove their phone numbers, "
            "emails and tags; bulk create and delete. Keyed by customer_id. Each command is applied "
            "once per command_id (redeliveries and replays answer the first outcome). A reply "
            "(ContactReply, BulkCreateReply or BulkDeleteReply) is sent when reply_to is set, once "
            "the change is stored and its events are published. Consumed in batches, applied in order."
        ),
    )
    while_consuming(subscriber, handover.batch)

    @poll_again_at_once(subscriber)
    async def on_commands(records: Records) -> None:
        with replier.metrics.command_batch_seconds.time():
            async with keep_polling(subscriber_consumer(subscriber), every=settings.poll_while_busy_seconds):
                answered = await commands.apply(records)
        await asyncio.gather(*(replier.reply(record, reply) for record, reply in answered))


def _where(record: ConsumerRecord[Any, Any]) -> dict[str, Any]:
    return {
        "messaging.destination.name": record.topic,
        "messaging.kafka.destination.partition": record.partition,
        "messaging.kafka.message.offset": record.offset,
    }
