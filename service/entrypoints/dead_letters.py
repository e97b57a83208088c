"""The dead-letter topic: a message that could not be handled, parked unchanged with the reason."""

import logging
from typing import Any

from aiokafka import ConsumerRecord

from contracts import headers as h
from contracts.errors import Error
from contracts.replies import ErrorReply
from service.compat import KafkaPublisher
from service.entrypoints.replies import Replier, header_map

log = logging.getLogger("contact_service")


class DeadLetters:
    """Parks a message it could not handle, unchanged, with the reason and its origin in headers."""

    def __init__(self, publisher: KafkaPublisher) -> None:
        self._publisher = publisher

    async def send(self, record: ConsumerRecord[Any, Any], error: Error) -> None:
        original = {
            k: v.decode("utf-8", "replace") for k, v in header_map(record).items() if k != "content-type"
        }
        await self._publisher.publish(
            record.value or b"",
            key=record.key,
            headers={
                **original,
                h.DLQ_REASON: error.code.value,
                h.DLQ_MESSAGE: error.message[:1000],
                h.DLQ_FIELD: error.field or "",
                h.DLQ_SOURCE_TOPIC: record.topic,
                h.DLQ_SOURCE_PARTITION: str(record.partition),
                h.DLQ_SOURCE_OFFSET: str(record.offset),
            },
        )
        log.warning(
            "dead-lettered %s[%s]@%s: %s %s",
            record.topic,
            record.partition,
            record.offset,
            error.code,
            error.message,
        )


async def reject(
    record: ConsumerRecord[Any, Any], error: Error, *, replier: Replier, dead_letters: DeadLetters
) -> None:
    """Answer bad input with an error reply if one was asked for, else dead-letter it."""
    if not await replier.reply(record, ErrorReply(error=error)):
        await dead_letters.send(record, error)
