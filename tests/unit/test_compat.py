"""One test per assumption service/compat.py makes about FastStream's and aiokafka's internals:
after a library upgrade, a failure here names the assumption that no longer holds."""

import asyncio
import contextlib
import inspect
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from fast_depends import inject
from fast_depends.exceptions import ValidationError as ArgumentsError
from faststream.kafka import KafkaMessage, KafkaRouter
from faststream.kafka.parser import AioKafkaBatchParser, AioKafkaParser
from faststream.kafka.subscriber import usecase as faststream_usecase
from faststream.kafka.subscriber.usecase import BatchSubscriber
from pydantic import ValidationError

from service import compat
from service.config import Settings
from service.entrypoints import lookups
from tests.factories import record

SPRING_ID = bytes(range(250, 256)) + bytes(10)  # a binary correlation id: not UTF-8


def _record(offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    return record(offset=offset, headers=[("kafka_correlationId", SPRING_ID), ("reply_to", b"r")])


async def test_faststream_still_fails_on_binary_headers_so_the_tolerant_parsers_are_needed() -> None:
    with pytest.raises(UnicodeDecodeError):
        await AioKafkaParser(KafkaMessage, None).parse_message(_record())


async def test_the_tolerant_parser_blanks_binary_headers_and_keeps_the_raw_record() -> None:
    record = _record()
    message = await compat.tolerant_parser(record, AioKafkaParser(KafkaMessage, None).parse_message)
    assert message.raw_message is record  # what replies echo, byte for byte
    assert message.headers["kafka_correlationId"] == "" and message.headers["reply_to"] == "r"


async def test_the_tolerant_batch_parser_keeps_the_raw_records_which_raw_records_hands_over() -> None:
    records = (_record(0), _record(1))
    message = await compat.tolerant_batch_parser(records, AioKafkaBatchParser(KafkaMessage, None).parse_batch)
    assert message.raw_message is records
    assert await compat.raw_records(message, original=_never) == list(records)


async def _never(*_: object) -> object:
    raise AssertionError("raw_records decodes nothing itself")


class _QuietThenBusy:
    """A consumer whose first poll finds nothing (a quiet spell), then one lookup."""

    def __init__(self) -> None:
        self.polls: list[tuple[int, int | None]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int | None) -> dict[str, list[str]]:
        self.polls.append((timeout_ms, max_records))
        return {} if len(self.polls) == 1 else {"tp": ["lookup"]}


async def test_the_batch_subscriber_polls_through_get_msg_which_poll_again_at_once_replaces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # FastStream's own get_msg sleeps batch_timeout_ms (through anyio) after an empty poll.
    assert "anyio.sleep" in inspect.getsource(BatchSubscriber.get_msg)

    async def no_pause(seconds: float) -> None:
        raise AssertionError(f"paused {seconds}s after an empty poll")

    monkeypatch.setattr(faststream_usecase, "anyio", SimpleNamespace(sleep=no_pause))
    router = KafkaRouter()
    lookups.build_router(
        settings=Settings(lookup_workers=7), answers=cast(lookups.Answers, None), router=router
    )
    (subscriber,) = router.subscribers
    assert isinstance(subscriber, BatchSubscriber)
    quiet_then_busy = _QuietThenBusy()
    consumer = cast(AIOKafkaConsumer, quiet_then_busy)
    assert await subscriber.get_msg(consumer) == ()
    assert await subscriber.get_msg(consumer) == ("lookup",)
    assert quiet_then_busy.polls == [(200, 7), (200, 7)]  # FastStream's timeout and LOOKUP_WORKERS kept


def test_a_subscriber_keeps_its_consumer_as_an_attribute() -> None:
    subscriber = KafkaRouter().subscriber("t", batch=True, group_id="g")
    assert compat.subscriber_consumer(subscriber) is None  # until it starts
    marker = cast(AIOKafkaConsumer, object())
    subscriber.consumer = marker  # what start() does
    assert compat.subscriber_consumer(subscriber) is marker


async def test_a_consumer_fetches_all_metadata_through_its_private_client() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
    fetch = consumer._client.fetch_all_metadata
    assert inspect.iscoroutinefunction(fetch)
    await consumer.stop()


def test_a_handler_argument_that_fails_validation_carries_the_pydantic_error() -> None:
    @inject
    def handler(count: int) -> int:
        return count

    with pytest.raises(ArgumentsError) as caught:
        cast(Any, handler)("not a number")
    unwrapped = compat.unwrap_argument_error(caught.value)
    assert isinstance(unwrapped, ValidationError) and unwrapped.errors()[0]["loc"] == ("count",)


def test_router_publishers_are_the_class_the_service_types_them_as() -> None:
    assert isinstance(KafkaRouter().publisher("t"), compat.KafkaPublisher)


async def test_uvicorn_serves_without_taking_the_process_signals() -> None:
    import signal
    import urllib.request

    import uvicorn

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"up"})

    before = signal.getsignal(signal.SIGTERM)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    )
    await compat.start_uvicorn(server)
    loop = asyncio.create_task(server.main_loop())
    port = server.servers[0].sockets[0].getsockname()[1]
    body = await asyncio.to_thread(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
    )
    assert body == b"up" and signal.getsignal(signal.SIGTERM) is before
    server.should_exit = True
    await loop
    await server.shutdown()


async def test_the_consume_loop_hands_each_batch_to_consume_which_while_consuming_wraps() -> None:
    # No await between the poll's return and consume: a rebalance cannot slip in between.
    loop_source = inspect.getsource(BatchSubscriber._run_consume_loop)
    assert "msg = await self.get_msg(consumer)" in loop_source
    assert "await self.consume_one(msg)" in loop_source
    assert "await self.consume(msg)" in inspect.getsource(BatchSubscriber.consume_one)

    subscriber = KafkaRouter().subscriber("t", batch=True, group_id="g")
    seen: list[str] = []

    async def consume(msg: Any) -> str:
        seen.append(f"consume {msg}")
        return "done"

    subscriber.consume = consume  # type: ignore[method-assign]

    @contextlib.contextmanager
    def around() -> Iterator[None]:
        seen.append("enter")
        yield
        seen.append("exit")

    compat.while_consuming(subscriber, around)
    await subscriber.consume_one(("batch",))
    assert seen == ["enter", "consume ('batch',)", "exit"]
