"""Caller identity: "who is calling?" by phone, email or a batch of phones, over request/reply."""

import asyncio
import logging
import time
from typing import Annotated, Any

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaRouter
from faststream.middlewares import AckPolicy
from pydantic import ValidationError, WithJsonSchema

from contracts import headers, topics
from contracts import queries as q
from contracts.errors import Error, ErrorCode
from contracts.replies import BatchLookupReply, ContactReply, ErrorReply
from service import tracing
from service.compat import one_record_schema, poll_again_at_once, raw_batch_subscriber
from service.config import Settings
from service.entrypoints.dead_letters import DeadLetters, reject
from service.entrypoints.failures import bad_input, is_transient
from service.entrypoints.logs import log_context, record_fields
from service.entrypoints.replies import Replier
from service.service_layer import queries
from service.service_layer.context import Services

log = logging.getLogger("contact_service.lookups")


Records = Annotated[list[Any], WithJsonSchema(one_record_schema(q.LOOKUP_ADAPTER))]
"""A batch's raw records, each parsed on its own; documented as what one record carries."""


class Answers:
    """Lookups being answered: at most ``limit`` at once, each on its own, drained at shutdown.

    Records come in batches (one pass through FastStream per batch, not per lookup: about a fifth
    of a lookup's CPU) but are answered concurrently, so one slow answer holds up no other. Taking
    a slot before starting an answer is the backpressure: the next batch is fetched only once
    there is room.
    """

    def __init__(self, *, limit: int, svc: Services, replier: Replier, dead_letters: DeadLetters) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._running: set[asyncio.Task[None]] = set()
        self._svc, self._replier, self._dead_letters = svc, replier, dead_letters

    async def start(self, record: ConsumerRecord[Any, Any]) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(self._answer(record))
        self._running.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: "asyncio.Task[None]") -> None:
        self._running.discard(task)
        self._slots.release()

    async def drain(self) -> None:
        if self._running:
            await asyncio.wait(set(self._running))

    async def _answer(self, record: ConsumerRecord[Any, Any]) -> None:
        with log_context(**record_fields(record), correlation_id=_correlation(record)):
            if not tracing.enabled():
                await self._answer_logged(record)
                return
            parent = tracing.extract(record.headers)
            with tracing.tracer.start_as_current_span("lookup", context=parent):
                await self._answer_logged(record)

    async def _answer_logged(self, record: ConsumerRecord[Any, Any]) -> None:
        began = time.perf_counter()
        try:
            if self._replier.expired(record):
                return  # the caller gave up; counted, not answered late
            try:
                query = q.LOOKUP_ADAPTER.validate_json(record.value or b"")
            except ValidationError as exc:
                await reject(
                    record, bad_input(exc), replier=self._replier, dead_letters=self._dead_letters, exc=exc
                )
                return
            reply: ContactReply | BatchLookupReply | ErrorReply | bytes
            try:
                if isinstance(query, q.LookupContact):
                    reply = await queries.lookup_contact(query, svc=self._svc)
                else:
                    reply = await queries.batch_lookup_contacts(query, svc=self._svc)
            except Exception as exc:
                if is_transient(exc):
                    log.warning("lookup failed: %r", exc)
                    error = Error(code=ErrorCode.UNAVAILABLE, message="store unavailable, retry")
                else:
                    log.exception("lookup failed")
                    error = Error(code=ErrorCode.PROCESSING_FAILED, message=f"lookup failed: {exc!r}")
                reply = ErrorReply(error=error)
            await self._replier.reply(record, reply)
            source = "directory" if isinstance(reply, bytes) else "store"
            self._replier.metrics.lookup_seconds.labels(source).observe(time.perf_counter() - began)
        except Exception:
            # Read-only and committed first: the caller's timeout (and retry) covers a lost answer.
            log.exception("could not answer lookup %s[%s]@%s", record.topic, record.partition, record.offset)


def build_router(*, settings: Settings, answers: Answers, router: KafkaRouter) -> None:
    subscriber = raw_batch_subscriber(
        router,
        settings.topic(topics.LOOKUPS),
        max_records=settings.lookup_workers,
        group_id=settings.group(topics.LOOKUPS),
        # A lookup is only worth answering while its caller waits: commit first and answer many
        # at once. After a crash the caller's timeout (and retry) covers the lost request; a new
        # group starting from the earliest offset drops old requests by their deadline.
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK_FIRST,
        no_reply=True,
        title="contact-lookups",
        description=(
            "lookup_contact by phone (any accepted format, normalized to E.164) or email (any case), "
            "and batch_lookup_contacts for up to 100 phones. Answered with ContactReply or "
            "BatchLookupReply: the asking customer's active contact, or CONTACT_NOT_FOUND. Replies follow "
            "the request's convention: FastStream's reply_to + correlation_id, or Spring Kafka's "
            "kafka_replyTopic + kafka_replyPartition + kafka_correlationId (echoed byte for byte). "
            "A request past its deadline header (epoch ms) is dropped and counted, not answered late. "
            "Answered from the in-memory caller directory once it holds every change published "
            "before the request arrived, else from the store."
        ),
    )

    @poll_again_at_once(subscriber)
    async def on_lookups(records: Records) -> None:
        for record in records:
            await answers.start(record)


def _correlation(record: ConsumerRecord[Any, Any]) -> str | None:
    found = dict(record.headers or ())
    if headers.SPRING_CORRELATION_ID in found:
        return (found[headers.SPRING_CORRELATION_ID] or b"").hex()  # binary, by default
    if headers.CORRELATION_ID in found:
        return (found[headers.CORRELATION_ID] or b"").decode("utf-8", "replace")
    return None
