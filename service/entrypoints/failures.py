"""The rules for failures, applied to every subscriber by ``FailurePolicy``:

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
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any

from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from faststream import BaseMiddleware
from pydantic import ValidationError
from pymongo.errors import ConnectionFailure, PyMongoError

from contracts.commands import COMMAND_ADAPTER
from contracts.errors import Error, ErrorCode, field_path
from contracts.queries import LOOKUP_ADAPTER, QUERY_ADAPTER
from contracts.sync import SYNC_ADAPTER
from service.compat import unwrap_argument_error
from service.entrypoints.dead_letters import DeadLetters, reject
from service.entrypoints.logs import log_context, record_fields
from service.entrypoints.replies import Replier

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


_RECORD: ContextVar[Any] = ContextVar("contact_service_record")


def current_record() -> ConsumerRecord[Any, Any]:
    """The raw record the running handler was given (a tuple of them for a batch subscriber).

    Handlers take it from here, set by the failure middleware, rather than through a
    ``KafkaMessage`` parameter: FastStream resolves context parameters in a worker thread, a
    thread hop per message, a visible share of a lookup's CPU and latency (docs/measurements.md).
    """
    return _RECORD.get()  # type: ignore[no-any-return]


def input_error(exc: BaseException) -> Error | None:
    """The error to report for bad input, or None when ``exc`` is not about the input."""
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return Error(code=ErrorCode.MALFORMED_MESSAGE, message=f"body is not JSON: {exc}")
    if isinstance(exc, RecursionError):
        # json.loads (FastStream's decoder) on a body nested ~1000 deep: it fails the same way
        # every time, so it is bad input, not a failure worth retrying and parking unanswered.
        return Error(code=ErrorCode.MALFORMED_MESSAGE, message="body is nested too deeply")
    exc = unwrap_argument_error(exc)
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
        first = msg.raw_message[0] if isinstance(msg.raw_message, tuple) else msg.raw_message
        try:
            with log_context(**record_fields(first)):
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
                await reject(
                    record, error, replier=policy.replier, dead_letters=policy.dead_letters, exc=exc_val
                )
            return True  # handled: commit and move on
        attempt = policy.attempts[where] = policy.attempts.get(where, 0) + 1
        if not is_transient(exc_val) and attempt >= policy.max_attempts:
            policy.attempts.pop(where, None)
            log.exception("giving up on %s after %d attempts", where, attempt, exc_info=exc_val)
            failure = gave_up(exc_val)
            for record in records:
                await policy.dead_letters.send(record, failure, exc=exc_val, attempts=attempt)
            return True
        delay = retry_delay(attempt, policy.backoff_max)
        log.warning("attempt %d on %s failed (%r); retrying in %.1fs", attempt, where, exc_val, delay)
        await asyncio.sleep(delay)
        return False  # not handled: the message is nacked and redelivered
