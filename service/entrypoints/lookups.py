"""Caller identity: "who is calling?" by phone, email or a batch of phones, over request/reply."""

from faststream.kafka import KafkaRouter
from faststream.middlewares import AckPolicy

from contracts import queries as q
from contracts import topics
from contracts.errors import Error, ErrorCode
from contracts.replies import BatchLookupReply, ContactReply, ErrorReply
from service.config import Settings
from service.entrypoints.messaging import Replier, current_record, is_transient, log
from service.service_layer import queries
from service.service_layer.context import Services


def build_router(*, settings: Settings, svc: Services, replier: Replier, router: KafkaRouter) -> None:
    @router.subscriber(
        settings.topic(topics.LOOKUPS),
        group_id=f"{settings.consumer_group}.lookups",
        # A lookup is only worth answering while its caller waits: commit first and answer many
        # at once. After a crash the caller's timeout (and retry) covers the lost request; a new
        # group starting from the earliest offset drops old requests by their deadline.
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK_FIRST,
        max_workers=settings.lookup_workers,
        no_reply=True,
        title="contact-lookups",
        description=(
            "lookup_contact by phone (any accepted format, normalized to E.164) or email (any case), "
            "and batch_lookup_contacts for up to 100 phones. Answered with ContactReply or "
            "BatchLookupReply: the asking customer's active contact, or CONTACT_NOT_FOUND. Replies follow "
            "the request's convention: FastStream's reply_to + correlation_id, or Spring Kafka's "
            "kafka_replyTopic + kafka_replyPartition + kafka_correlationId (echoed byte for byte). "
            "A request past its deadline header (epoch ms) is dropped and counted, not answered late."
        ),
    )
    async def on_lookup(query: q.LookupQuery) -> None:
        record = current_record()
        if replier.expired(record):
            return  # the caller gave up; counted, not answered late
        reply: ContactReply | BatchLookupReply | ErrorReply | bytes
        try:
            if isinstance(query, q.LookupContact):
                reply = await queries.lookup_contact(query, svc=svc)
            else:
                reply = await queries.batch_lookup_contacts(query, svc=svc)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("lookup failed: %r", exc)
            reply = ErrorReply(error=Error(code=ErrorCode.UNAVAILABLE, message="store unavailable, retry"))
        await replier.reply(record, reply)
