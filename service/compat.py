"""Every place the service leans on FastStream's or aiokafka's internals, and nothing else.

Each function states the assumption it makes about the library; tests/unit/test_compat.py holds
one test per assumption, so an upgrade that breaks one fails there first, by name.
"""

import asyncio
import copy
import itertools
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.cluster import ClusterMetadata
from aiokafka.errors import GroupCoordinatorNotAvailableError
from fast_depends.exceptions import ValidationError as ArgumentsError
from faststream.kafka import KafkaRouter
from faststream.kafka.publisher.usecase import DefaultPublisher as KafkaPublisher
from faststream.kafka.subscriber.usecase import BatchSubscriber
from pydantic import TypeAdapter, ValidationError

__all__ = [
    "KafkaPublisher",
    "cluster_metadata",
    "group_state",
    "kafka_handshake",
    "one_record_schema",
    "poll_again_at_once",
    "raw_batch_subscriber",
    "raw_records",
    "readable_headers",
    "start_consumer",
    "start_uvicorn",
    "subscriber_consumer",
    "tolerant_batch_parser",
    "tolerant_parser",
    "unwrap_argument_error",
    "while_consuming",
]


async def tolerant_parser(record: ConsumerRecord[Any, Any], original: Callable[..., Awaitable[Any]]) -> Any:
    """FastStream's parser, minus its failure on header values that are not UTF-8.

    Spring's kafka_correlationId is a binary UUID; FastStream decodes every header as text. The
    parsed message sees such values blanked; ``raw_message`` keeps the original bytes, which is
    what replies echo. Assumes: FastStream fails on such a header, a custom parser is called with
    the record and FastStream's own parser, and the parsed message's ``raw_message`` may be set.
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
    """No decoding: the handler parses each record itself, so one bad record cannot sink a batch.

    Assumes: a batch subscriber's message holds its records as ``raw_message``.
    """
    return list(message.raw_message)


def raw_batch_subscriber(router: KafkaRouter, topic: str, **options: Any) -> BatchSubscriber:
    """A batch subscriber handed the records of each poll as they came, binary headers and all."""
    subscriber: BatchSubscriber = router.subscriber(
        topic, batch=True, parser=tolerant_batch_parser, decoder=raw_records, **options
    )
    return subscriber


def while_consuming(
    subscriber: BatchSubscriber, around: Callable[[], AbstractContextManager[Any]]
) -> BatchSubscriber:
    """``subscriber``, inside ``around()`` from taking each polled batch until it is acknowledged.

    Assumes: the consume loop hands a polled batch to ``consume(msg)`` with no await between the
    poll's return and that call, and ``consume`` returns after the handler and the ack policy (the
    commit, or the seek back) are done.
    """
    consume = subscriber.consume

    async def consuming(msg: Any) -> Any:
        with around():
            return await consume(msg)

    subscriber.consume = consuming  # type: ignore[method-assign]
    return subscriber


def one_record_schema(adapter: TypeAdapter[Any]) -> dict[str, Any]:
    """The JSON schema of what one record of a batch carries, with its definitions inlined: a
    batch subscriber's documented payload (FastStream documents the list it hands over)."""
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

    A lookup arriving during that pause waited for it (docs/measurements.md). aiokafka's
    ``getmany`` already waits for records; polling again at once costs one wake-up per timeout
    while idle. Assumes: the batch subscriber polls through its ``get_msg(consumer)`` method,
    sleeping ``batch_timeout_ms`` after an empty poll, and reads ``max_records``.
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


def subscriber_consumer(subscriber: Any) -> AIOKafkaConsumer | None:
    """The aiokafka consumer a started FastStream subscriber polls with (None before it starts).

    Assumes: FastStream 0.6+ keeps it as the subscriber's ``consumer`` attribute.
    """
    consumer: AIOKafkaConsumer | None = subscriber.consumer
    return consumer


async def cluster_metadata(consumer: AIOKafkaConsumer) -> ClusterMetadata:
    """Fresh metadata of every topic, as a ``ClusterMetadata``.

    Assumes: a started consumer's private ``_client`` (an ``AIOKafkaClient``) has
    ``fetch_all_metadata``. ``consumer.topics()`` fetches the same but keeps the result from
    ``partitions_for_topic``.
    """
    metadata: ClusterMetadata = await consumer._client.fetch_all_metadata()
    return metadata


async def group_state(admin: AIOKafkaAdminClient, group_id: str) -> tuple[str, int]:
    """A consumer group's state ("Empty", "Stable", "Dead" for none...) and its member count.

    Assumes: aiokafka's ``describe_consumer_groups`` returns the raw DescribeGroups responses,
    whose ``to_object()`` holds ``groups`` with ``group``, ``state`` and ``members``.
    """
    for attempt in range(20):  # a fresh cluster has no group coordinator until its offsets topic exists
        try:
            responses = await admin.describe_consumer_groups([group_id])
            break
        except GroupCoordinatorNotAvailableError:
            if attempt == 19:
                raise
            await asyncio.sleep(0.5)
    for response in responses:
        for group in response.to_object()["groups"]:
            if group["group"] == group_id:
                return str(group["state"]), len(group["members"])
    return "Dead", 0


async def start_consumer(consumer: AIOKafkaConsumer) -> AIOKafkaConsumer:
    """``consumer.start()``, then one turn of the loop before anything may stop it.

    Assumes: a consumer without a group starts a background task that, cancelled before its first
    step, makes ``stop()`` raise CancelledError (aiokafka 0.14's NoGroupCoordinator.close).
    """
    await consumer.start()
    await asyncio.sleep(0)
    return consumer


async def kafka_handshake(host: str, port: int, options: dict[str, Any]) -> None:
    """Connect once to one broker with the client options (TLS, SASL) and close again.

    aiokafka's clients report refused credentials only as "Unable to bootstrap" (the reason goes
    to their log); one direct connection raises the reason itself. Assumes: ``aiokafka.conn.
    create_conn`` takes the clients' security options and raises ``SaslAuthenticationFailed``.
    """
    from aiokafka.conn import create_conn

    wanted = {k: options[k] for k in _HANDSHAKE_OPTIONS if k in options}
    conn = await create_conn(
        host, port, client_id="contact-service-preflight", request_timeout_ms=10_000, **wanted
    )
    conn.close()


_HANDSHAKE_OPTIONS = (
    "security_protocol",
    "ssl_context",
    "sasl_mechanism",
    "sasl_plain_username",
    "sasl_plain_password",
)


async def start_uvicorn(server: Any) -> None:
    """Bind and start a ``uvicorn.Server`` inside the running service, without its signal handling
    (``serve()`` would take SIGINT/SIGTERM from FastStream, which drains the consumers).

    Assumes: ``serve()`` is ``config.load()``, ``lifespan = config.lifespan_class(config)``,
    ``startup()``, ``main_loop()``, ``shutdown()``, wrapped in ``capture_signals()``.
    """
    server.config.load()
    server.lifespan = server.config.lifespan_class(server.config)
    await server.startup()


def unwrap_argument_error(exc: BaseException) -> BaseException:
    """The pydantic error behind a handler argument that failed validation, else ``exc``.

    Assumes: fast_depends wraps it in its own ``ValidationError`` with ``original_error``.
    """
    if isinstance(exc, ArgumentsError) and isinstance(exc.original_error, ValidationError):
        return exc.original_error
    return exc
