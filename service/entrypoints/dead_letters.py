"""The dead-letter topic: a message that could not be handled, parked unchanged with the reason.

A dead letter is the original key, value and headers (byte for byte: a redrive puts them back as
they were) plus the reason in two header sets: the service's own ``dlq_*`` and Spring Kafka's
``kafka_dlt-*`` (with the consumer group and the attempts made).
"""

import logging
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord

from contracts import headers as h
from contracts.errors import Error
from contracts.replies import ErrorReply
from service.entrypoints.metrics import Metrics
from service.entrypoints.replies import Replier

log = logging.getLogger("contact_service")

_TIMESTAMP_TYPES = {0: b"CreateTime", 1: b"LogAppendTime"}


class DeadLetters:
    """Parks what could not be handled on the dead-letter topic, through a producer of its own:
    FastStream's publisher would re-encode binary headers as text."""

    def __init__(
        self, *, client_options: dict[str, Any], topic: str, groups: dict[str, str], metrics: Metrics
    ) -> None:
        self._options: dict[str, Any] = {
            **client_options,
            "client_id": "contact-service-dead-letters",
            "acks": "all",
            "enable_idempotence": True,
        }
        self.topic, self._groups, self._metrics = topic, groups, metrics
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(**self._options)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        self._producer = None

    async def send(
        self,
        record: ConsumerRecord[Any, Any],
        error: Error,
        *,
        exc: BaseException | None = None,
        attempts: int = 1,
    ) -> None:
        assert self._producer is not None, "DeadLetters.start() was not awaited"
        await self._producer.send_and_wait(
            self.topic,
            record.value or b"",
            key=record.key,
            headers=[*original_headers(record.headers), *self._reason(record, error, exc, attempts)],
        )
        self._metrics.dead_letters.labels(error.code.value).inc()
        log.warning(
            "dead-lettered %s[%s]@%s: %s %s",
            record.topic,
            record.partition,
            record.offset,
            error.code,
            error.message,
        )

    def _reason(
        self, record: ConsumerRecord[Any, Any], error: Error, exc: BaseException | None, attempts: int
    ) -> list[tuple[str, bytes]]:
        failure = type(exc) if exc is not None else ValueError
        return [
            (h.DLQ_REASON, error.code.value.encode()),
            (h.DLQ_MESSAGE, error.message[:1000].encode()),
            (h.DLQ_FIELD, (error.field or "").encode()),
            (h.DLQ_SOURCE_TOPIC, record.topic.encode()),
            (h.DLQ_SOURCE_PARTITION, str(record.partition).encode()),
            (h.DLQ_SOURCE_OFFSET, str(record.offset).encode()),
            (h.DLT_ORIGINAL_TOPIC, record.topic.encode()),
            (h.DLT_ORIGINAL_PARTITION, record.partition.to_bytes(4, "big", signed=True)),
            (h.DLT_ORIGINAL_OFFSET, record.offset.to_bytes(8, "big", signed=True)),
            (h.DLT_ORIGINAL_TIMESTAMP, int(record.timestamp or 0).to_bytes(8, "big", signed=True)),
            (h.DLT_ORIGINAL_TIMESTAMP_TYPE, _TIMESTAMP_TYPES.get(record.timestamp_type, b"CreateTime")),
            (h.DLT_ORIGINAL_CONSUMER_GROUP, self._groups.get(record.topic, "").encode()),
            (h.DLT_EXCEPTION_FQCN, f"{failure.__module__}.{failure.__qualname__}".encode()),
            (h.DLT_EXCEPTION_MESSAGE, error.message[:1000].encode()),
            (h.DELIVERY_ATTEMPT, attempts.to_bytes(4, "big", signed=True)),
        ]


def original_headers(headers: Any) -> list[tuple[str, bytes]]:
    """A record's headers without any a dead letter adds (a message dead-lettered again after a
    redrive gets fresh ones)."""
    return [(k, v or b"") for k, v in headers or () if k not in h.DEAD_LETTER_HEADERS]


async def reject(
    record: ConsumerRecord[Any, Any],
    error: Error,
    *,
    replier: Replier,
    dead_letters: DeadLetters,
    exc: BaseException | None = None,
) -> None:
    """Answer bad input with an error reply if one was asked for, else dead-letter it."""
    if not await replier.reply(record, ErrorReply(error=error)):
        await dead_letters.send(record, error, exc=exc)
