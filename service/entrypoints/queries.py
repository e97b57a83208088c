"""Get and list, answered over request/reply."""

from faststream.kafka import KafkaRouter
from faststream.middlewares import AckPolicy

from contracts import queries as q
from contracts import topics
from contracts.replies import ContactListReply, ContactReply
from service.config import Settings
from service.entrypoints.failures import current_record
from service.entrypoints.replies import REQUEST_FETCH_MAX_WAIT_MS, Replier
from service.service_layer import queries
from service.service_layer.context import Services


def build_router(*, settings: Settings, svc: Services, replier: Replier, router: KafkaRouter) -> None:
    @router.subscriber(
        settings.topic(topics.QUERIES),
        group_id=settings.group(topics.QUERIES),
        fetch_max_wait_ms=REQUEST_FETCH_MAX_WAIT_MS,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        no_reply=True,
        title="contact-queries",
        description=(
            "get_contact and list_contacts (newest first, page_size <= 100, opaque page_token). "
            "Answered with ContactReply or ContactListReply on reply_to; soft-deleted contacts "
            "are never returned."
        ),
    )
    async def on_query(query: q.ContactQuery) -> None:
        record = current_record()
        if replier.expired(record):
            return  # the caller gave up; counted, not answered late
        reply: ContactReply | ContactListReply
        if isinstance(query, q.GetContact):
            reply = await queries.get_contact(query, svc=svc)
        else:
            reply = await queries.list_contacts(query, svc=svc)
        await replier.reply(record, reply)
