"""Answers to requests: where to send them (FastStream's or Spring Kafka's convention), and the
producers that send them."""

import json
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from pydantic import BaseModel

from contracts import headers as h
from service import tracing
from service.entrypoints.metrics import Metrics

REQUEST_FETCH_MAX_WAIT_MS = 50
"""How long the broker may hold a fetch of a request topic that has nothing new. With Kafka's
default (500 ms), a request sent right after the answer to a slow one could wait out the whole
hold (a list read page after page did, every page); this bounds that wait."""


def header_map(record: ConsumerRecord[Any, Any]) -> dict[str, bytes]:
    return {key: value or b"" for key, value in (record.headers or ())}


@dataclass(frozen=True, slots=True)
class ReplyAddress:
    """Where and how to answer: FastStream's convention or Spring Kafka's ReplyingKafkaTemplate."""

    topic: str
    partition: int | None
    headers: list[tuple[str, bytes]]


def reply_address(headers: dict[str, bytes]) -> ReplyAddress | None:
    """The reply's destination in the convention the request used, or None if none was asked for."""
    spring_topic = headers.get(h.SPRING_REPLY_TOPIC)
    if spring_topic:
        raw_partition = headers.get(h.SPRING_REPLY_PARTITION)
        partition = int.from_bytes(raw_partition, "big", signed=True) if raw_partition else None
        # Spring matches replies on the exact correlation bytes (a 16-byte binary UUID by default).
        echoed = (
            [(h.SPRING_CORRELATION_ID, headers[h.SPRING_CORRELATION_ID])]
            if h.SPRING_CORRELATION_ID in headers
            else []
        )
        return ReplyAddress(spring_topic.decode(), partition, echoed)
    reply_to = headers.get(h.REPLY_TO)
    if reply_to:
        correlation = headers.get(h.CORRELATION_ID)
        return ReplyAddress(reply_to.decode(), None, [(h.CORRELATION_ID, correlation)] if correlation else [])
    return None


class Replier:
    """Answers requests that asked for an answer, in the convention they used, unless too late.

    Replies go through producers of their own: raw header bytes (Spring's correlation id) pass
    through unchanged, and a reply waits for the leader only (acks=1) — a lost reply is a caller
    timeout, not lost data, and every millisecond counts while a caller waits. Small replies
    (lookups) go uncompressed; large ones (a bulk reply of 1,000 contacts runs to hundreds of KB
    of JSON, more with long names and notes) go zstd-compressed, well inside the broker's default
    1 MB record limit. zstd rather than gzip: aiokafka compresses gzip at level 9, far slower for
    a larger result (docs/measurements.md). Every Kafka client since 2.1 reads zstd (Python's
    aiokafka with ``cramjam`` installed).
    """

    COMPRESS_FROM = 64 * 1024
    """Reply size (bytes) from which replies are compressed."""

    def __init__(
        self,
        *,
        client_options: dict[str, Any],
        metrics: Metrics,
        client_id: str = "contact-service-replies",
    ) -> None:
        self._options: dict[str, Any] = {
            **client_options,
            "client_id": client_id,
            "acks": 1,
            "linger_ms": 0,
            "max_request_size": 16 * 1024 * 1024,
        }
        self._plain: AIOKafkaProducer | None = None
        self._packed: AIOKafkaProducer | None = None
        self.metrics = metrics

    async def start(self) -> None:
        # Created here, not in __init__: aiokafka binds to the running event loop.
        self._plain = AIOKafkaProducer(**self._options)
        self._packed = AIOKafkaProducer(**self._options, compression_type="zstd")
        await self._plain.start()
        await self._packed.start()

    async def stop(self) -> None:
        for producer in (self._plain, self._packed):
            if producer is not None:
                await producer.stop()
        self._plain = self._packed = None

    def expired(self, record: ConsumerRecord[Any, Any]) -> bool:
        """True (and counted) when the request carries a deadline that has passed."""
        raw = header_map(record).get(h.DEADLINE)
        if not raw:
            return False
        try:
            deadline_ms = int(raw)
        except ValueError:
            return False
        if time.time() * 1000 <= deadline_ms:
            return False
        self.metrics.expired.labels(record.topic).inc()
        return True

    async def reply(self, record: ConsumerRecord[Any, Any], body: BaseModel | dict[str, Any] | bytes) -> bool:
        """Send ``body`` back if the request asked for a reply; False if it did not. Bytes are a
        reply already serialized."""
        address = reply_address(header_map(record))
        if address is None:
            return False
        if self.expired(record):
            return True  # asked for, but nobody is waiting any more: answering late helps no one
        if isinstance(body, bytes):
            payload = body
        else:
            payload = (body.model_dump_json() if isinstance(body, BaseModel) else json.dumps(body)).encode()
        producer = self._packed if len(payload) >= self.COMPRESS_FROM else self._plain
        assert producer is not None, "Replier.start() was not awaited"
        await producer.send_and_wait(
            address.topic,
            payload,
            partition=address.partition,
            headers=[
                ("content-type", b"application/json"),
                *address.headers,
                *tracing.continuing(record.headers),
            ],
        )
        self.metrics.replies.inc()
        return True
