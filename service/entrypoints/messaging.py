"""What every subscriber shares: replies, dead letters, and the rules for failures.

- Bad input (malformed JSON, unknown ``type``, schema violations) gets an error reply when a reply
  was asked for, else goes to the dead-letter topic with the reason in its headers; the offset is
  then committed and the consumer moves on.
- Infrastructure failures (store or broker unreachable) are retried with backoff, without limit:
  the offset is not committed, so nothing is lost.
- Any other failure is retried ``max_delivery_attempts`` times, then dead-lettered.
"""

import asyncio
import json
import logging
from types import TracebackType
from typing import Any

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError
from fast_depends.exceptions import ValidationError as ArgumentsError
from faststream import BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.publisher.usecase import DefaultPublisher as KafkaPublisher
from pydantic import BaseModel, ValidationError
from pymongo.errors import PyMongoError

from contracts import headers as h
from contracts.commands import COMMAND_ADAPTER
from contracts.errors import Error, ErrorCode
from contracts.queries import LOOKUP_ADAPTER, QUERY_ADAPTER
from contracts.replies import ErrorReply

log = logging.getLogger("contact_service")

MESSAGE_TYPES: frozenset[object] = frozenset(
    tag
    for adapter in (COMMAND_ADAPTER, QUERY_ADAPTER, LOOKUP_ADAPTER)
    for tag in adapter.json_schema()["discriminator"]["mapping"]
)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    PyMongoError,
    KafkaError,
    ConnectionError,
    TimeoutError,
)


def header_map(record: ConsumerRecord[Any, Any]) -> dict[str, bytes]:
    return {key: value or b"" for key, value in (record.headers or ())}


class Replier:
    """Sends a reply when the request asked for one (FastStream's reply_to + correlation_id)."""

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def reply(self, record: ConsumerRecord[Any, Any], body: BaseModel | dict[str, Any]) -> bool:
        headers = header_map(record)
        reply_to = headers.get(h.REPLY_TO, b"").decode()
        if not reply_to:
            return False
        payload = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
        correlation_id = headers.get(h.CORRELATION_ID, b"").decode() or None
        await self._broker.publish(payload, topic=reply_to, correlation_id=correlation_id)
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

    async def after_processed(
        self,
        exc_type: type[BaseException] | None = None,
        exc_val: BaseException | None = None,
        exc_tb: TracebackType | None = None,
    ) -> bool | None:
        record: ConsumerRecord[Any, Any] = self.msg
        where = (record.topic, record.partition, record.offset)
        if exc_val is None or not isinstance(exc_val, Exception):
            self.policy.attempts.pop(where, None)
            return False
        policy = self.policy
        error = input_error(exc_val)
        if error is not None:
            await reject(record, error, replier=policy.replier, dead_letters=policy.dead_letters)
            return True  # handled: commit and move on
        attempt = policy.attempts[where] = policy.attempts.get(where, 0) + 1
        if not isinstance(exc_val, TRANSIENT_ERRORS) and attempt >= policy.max_attempts:
            policy.attempts.pop(where, None)
            log.exception("giving up on %s after %d attempts", where, attempt, exc_info=exc_val)
            await policy.dead_letters.send(
                record,
                Error(code=ErrorCode.PROCESSING_FAILED, message=f"could not be applied: {exc_val!r}"),
            )
            return True
        delay = min(policy.backoff_max, 0.1 * 2 ** min(attempt, 10))
        log.warning("attempt %d on %s failed (%r); retrying in %.1fs", attempt, where, exc_val, delay)
        await asyncio.sleep(delay)
        return False  # not handled: the message is nacked and redelivered
