"""What every subscriber shares: replies, dead letters, and the rules for failures.

- Bad input (malformed JSON, unknown ``type``, schema violations) gets an error reply when a reply
  was asked for, else goes to the dead-letter topic with the reason in its headers; the offset is
  then committed and the consumer moves on.
- Infrastructure failures (store or broker unreachable) are retried with backoff, without limit:
  the offset is not committed, so nothing is lost.
- Any other failure is retried ``max_delivery_attempts`` times, then dead-lettered.
"""

import asyncio
import copy
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from fast_depends.exceptions import ValidationError as ArgumentsError
from faststream import BaseMiddleware
from faststream.kafka.publisher.usecase import DefaultPublisher as KafkaPublisher
from faststream.kafka.subscriber.usecase import BatchSubscriber
from pydantic import BaseModel, TypeAdapter, ValidationError
from pymongo.errors import ConnectionFailure, PyMongoError

from contracts import headers as h
from contracts.commands import COMMAND_ADAPTER
from contracts.errors import Error, ErrorCode
from contracts.queries import LOOKUP_ADAPTER, QUERY_ADAPTER
from contracts.replies import ErrorReply
from contracts.sync import SYNC_ADAPTER

log = logging.getLogger("contact_service")

MESSAGE_TYPES: frozenset[object] = frozenset(
    tag
    for adapter in (COMMAND_ADAPTER, QUERY_ADAPTER, LOOKUP_ADAPTER, SYNC_ADAPTER)
    for tag in adapter.json_schema()["discriminator"]["mapping"]
)


def is_transient(exc: BaseException) -> bool:
    """An outage worth waiting out (retry without limit), not a message that can never succeed."""
    if isinstance(exc, ConnectionFailure | ConnectionError | TimeoutError):
        return True  # includes AutoReconnect, NetworkTimeout and server selection timeouts
    if isinstance(exc, PyMongoError):
        return exc.has_error_label("RetryableWriteError") or exc.has_error_label("TransientTransactionError")
    if isinstance(exc, KafkaError):
        return bool(exc.retriable) or isinstance(exc, KafkaConnectionError | KafkaTimeoutError)
    return False


def header_map(record: ConsumerRecord[Any, Any]) -> dict[str, bytes]:
    return {key: value or b"" for key, value in (record.headers or ())}


async def tolerant_parser(record: ConsumerRecord[Any, Any], original: Callable[..., Awaitable[Any]]) -> Any:
    """FastStream's parser, minus its failure on header values that are not UTF-8.

    Spring's kafka_correlationId is a binary UUID; FastStream decodes every header as text. The
    parsed message sees such values blanked; ``raw_message`` keeps the original bytes, which is
    what replies echo.
    """
    if all(_is_text(value) for _, value in record.headers or ()):
        return await original(record)
    readable = copy.copy(record)
    readable.headers = readable_headers(record.headers)
    message = await original(readable)
    message.raw_message = record
    return message


async def tolerant_batch_parser(
    records: tuple[ConsumerRecord[Any, Any], ...], original: Callable[..., Awaitable[Any]]
) -> Any:
    """FastStream's batch parser, minus its failure on header values that are not UTF-8."""
    readable = []
    for record in records:
        clean = copy.copy(record)
        clean.headers = readable_headers(record.headers)
        readable.append(clean)
    message = await original(tuple(readable))
    message.raw_message = records
    return message


async def raw_records(message: Any, original: Callable[..., Awaitable[Any]]) -> Any:
    """No decoding: the handler parses each record itself, so one bad record cannot sink a batch."""
    return list(message.raw_message)


REQUEST_FETCH_MAX_WAIT_MS = 50
"""How long the broker may hold a fetch of a request topic that has nothing new. With Kafka's
default (500 ms), a request sent right after the answer to a slow one could wait out the whole
hold (a list read page after page did, every page); this bounds that wait."""


def one_record_schema(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """The JSON schema of what one record of a batch carries, with its definitions inlined."""
    schema = adapter.json_schema()
    inlined: dict[str, Any] = _inline(schema, schema.get("$defs", {}))
    return inlined


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with every ``$ref`` into ``defs`` replaced by what it names."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


def poll_again_at_once(subscriber: BatchSubscriber) -> BatchSubscriber:
    """``subscriber``, minus FastStream's pause after a poll that found nothing.

    FastStream 0.7's batch subscriber sleeps ``batch_timeout_ms`` (200 ms) after every empty poll,
    and a lookup arriving meanwhile waited for it: measured at 5 lookups/s, p90 205 ms and p99
    415 ms from send to the handler, against a bare echo's p99 of 8 ms. aiokafka's ``getmany``
    already waits for records; polling again at once costs one wake-up per timeout while idle.
    """

    async def get_msg(consumer: Any) -> tuple[ConsumerRecord[Any, Any], ...]:
        batches = await consumer.getmany(
            timeout_ms=subscriber.batch_timeout_ms, max_records=subscriber.max_records
        )
        return tuple(itertools.chain.from_iterable(batches.values()))  # empty: the loop polls again

    subscriber.get_msg = get_msg  # type: ignore[method-assign]
    return subscriber


def readable_headers(headers: Any) -> list[tuple[str, bytes]]:
    return [(k, v if _is_text(v) else b"") for k, v in headers or ()]


def _is_text(value: bytes | None) -> bool:
    try:
        (value or b"").decode()
    except UnicodeDecodeError:
        return False
    return True


_RECORD: ContextVar[Any] = ContextVar("contact_service_record")


def current_record() -> ConsumerRecord[Any, Any]:
    """The raw record the running handler was given (a tuple of them for a batch subscriber).

    Handlers take it from here, set by the failure middleware, rather than through a
    ``KafkaMessage`` parameter: FastStream resolves context parameters in a worker thread, a
    thread hop per message that cost lookups about a tenth of their CPU and added latency.
    """
    return _RECORD.get()  # type: ignore[no-any-return]


class Counters:
    """Process-wide counters, served as JSON on the health listener's /metrics."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    def add(self, name: str, amount: int = 1) -> None:
        self.values[name] = self.values.get(name, 0) + amount


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
    1 MB record limit. zstd rather than gzip: aiokafka compresses gzip at level 9, which cost a
    bulk create about 6 % of the service's CPU; zstd is ten times faster here and smaller. Every
    Kafka client since 2.1 reads it (Python's aiokafka with ``cramjam`` installed).
    """

    COMPRESS_FROM = 64 * 1024
    """Reply size (bytes) from which replies are compressed."""

    def __init__(
        self, *, bootstrap_servers: str, counters: Counters, client_id: str = "contact-service-replies"
    ) -> None:
        self._options: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "client_id": client_id,
            "acks": 1,
            "linger_ms": 0,
            "max_request_size": 16 * 1024 * 1024,
        }
        self._plain: AIOKafkaProducer | None = None
        self._packed: AIOKafkaProducer | None = None
        self.counters = counters

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
        self.counters.add(f"deadline_expired.{record.topic}")
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
            headers=[("content-type", b"application/json"), *address.headers],
        )
        self.counters.add("replies_sent")
        return True


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


def input_error(exc: BaseException) -> Error | None:
    """The error to report for bad input, or None when ``exc`` is not about the input."""
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return Error(code=ErrorCode.MALFORMED_MESSAGE, message=f"body is not JSON: {exc}")
    if isinstance(exc, ArgumentsError) and isinstance(exc.original_error, ValidationError):
        exc = exc.original_error
    if not isinstance(exc, ValidationError):
        return None
    first = exc.errors()[0]
    kind, loc = first["type"], list(first["loc"])
    if kind in {"union_tag_invalid", "union_tag_not_found"}:
        return Error(code=ErrorCode.UNKNOWN_MESSAGE_TYPE, message=first["msg"], field="type")
    # The location starts with the handler's argument name, then the union tag: neither is a field.
    if loc and loc[0] not in MESSAGE_TYPES:
        loc = loc[1:]
    if loc and loc[0] in MESSAGE_TYPES:
        loc = loc[1:]
    if not loc and isinstance(first.get("input"), bytes | str):
        return Error(code=ErrorCode.MALFORMED_MESSAGE, message="body is not a JSON object")
    return Error(code=ErrorCode.INVALID_ARGUMENT, message=first["msg"], field=field_path(loc) or None)


def bad_input(exc: Exception) -> Error:
    """The error to report for a record that did not parse: ``input_error``'s, else INVALID_ARGUMENT."""
    return input_error(exc) or Error(code=ErrorCode.INVALID_ARGUMENT, message=str(exc))


def gave_up(exc: BaseException) -> Error:
    """The reason a message is dead-lettered after its last attempt failed."""
    return Error(code=ErrorCode.PROCESSING_FAILED, message=f"could not be applied: {exc!r}")


def retry_delay(attempt: int, backoff_max: float) -> float:
    """Seconds to wait before attempt ``attempt + 1``: doubling from 0.2 s, at most ``backoff_max``."""
    return min(backoff_max, 0.1 * 2.0 ** min(attempt, 10))


def field_path(loc: list[int | str]) -> str:
    """``["contact", "emails", 0, "address"]`` → ``contact.emails[0].address`` (the domain's style)."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


class FailurePolicy:
    """Middleware factory applying the module's failure rules to every subscriber of a router."""

    def __init__(
        self, *, replier: Replier, dead_letters: DeadLetters, backoff_max: float, max_attempts: int
    ) -> None:
        self.replier, self.dead_letters = replier, dead_letters
        self.backoff_max, self.max_attempts = backoff_max, max_attempts
        self.attempts: dict[tuple[str, int, int], int] = {}

    def __call__(self, msg: Any, /, *, context: Any) -> BaseMiddleware:
        return _FailureMiddleware(msg, context=context, policy=self)


class _FailureMiddleware(BaseMiddleware):
    def __init__(self, msg: Any, /, *, context: Any, policy: FailurePolicy) -> None:
        super().__init__(msg, context=context)
        self.policy = policy

    async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
        token = _RECORD.set(msg.raw_message)
        try:
            return await call_next(msg)
        finally:
            _RECORD.reset(token)

    async def after_processed(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: TracebackType | None = None,
    ) -> bool | None:
        # A batch subscriber hands over a tuple of records: the rules apply to all of them.
        records: tuple[ConsumerRecord[Any, Any], ...] = (
            self.msg if isinstance(self.msg, tuple) else (self.msg,)
        )
        first = records[0]
        where = (first.topic, first.partition, first.offset)
        if exc_val is None or not isinstance(exc_val, Exception):
            self.policy.attempts.pop(where, None)
            return False
        policy = self.policy
        error = input_error(exc_val)
        if error is not None:
            for record in records:
                await reject(record, error, replier=policy.replier, dead_letters=policy.dead_letters)
            return True  # handled: commit and move on
        attempt = policy.attempts[where] = policy.attempts.get(where, 0) + 1
        if not is_transient(exc_val) and attempt >= policy.max_attempts:
            policy.attempts.pop(where, None)
            log.exception("giving up on %s after %d attempts", where, attempt, exc_info=exc_val)
            failure = gave_up(exc_val)
            for record in records:
                await policy.dead_letters.send(record, failure)
            return True
        delay = retry_delay(attempt, policy.backoff_max)
        log.warning("attempt %d on %s failed (%r); retrying in %.1fs", attempt, where, exc_val, delay)
        await asyncio.sleep(delay)
        return False  # not handled: the message is nacked and redelivered
