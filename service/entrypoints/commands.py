"""Contact commands: apply once, then reply (if asked). The offset is committed after both."""

from faststream.kafka import KafkaRouter
from faststream.middlewares import AckPolicy

from contracts import topics
from contracts.commands import ContactCommand
from service.config import Settings
from service.entrypoints.messaging import Replier, current_record
from service.entrypoints.polling import keep_polling
from service.service_layer.context import Services
from service.service_layer.handlers import handle_command


def build_router(*, settings: Settings, svc: Services, replier: Replier, router: KafkaRouter) -> None:
    subscriber = router.subscriber(
        settings.topic(topics.COMMANDS),
        group_id=f"{settings.consumer_group}.commands",
        max_poll_interval_ms=settings.kafka_max_poll_interval_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        no_reply=True,
        title="contact-commands",
        description=(
            "Create, update and soft-delete contacts; add, update and remove their phone numbers, "
            "emails and tags; bulk create and delete. Keyed by customer_id. Each command is applied "
            "once per command_id (redeliveries and replays answer the first outcome). A reply "
            "(ContactReply, BulkCreateReply or BulkDeleteReply) is sent when reply_to is set."
        ),
    )

    @subscriber
    async def on_command(command: ContactCommand) -> None:
        record = current_record()
        async with keep_polling(subscriber.consumer, every=settings.poll_while_busy_seconds):
            reply = await handle_command(command, svc=svc)
        await replier.reply(record, reply)
