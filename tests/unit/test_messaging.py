"""Failure classification and reply addressing, without a broker."""

from types import SimpleNamespace
from typing import cast

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from faststream.kafka import KafkaRouter
from faststream.kafka.subscriber import usecase as faststream_usecase
from faststream.kafka.subscriber.usecase import BatchSubscriber
from pymongo.errors import AutoReconnect, DuplicateKeyError, OperationFailure, ServerSelectionTimeoutError

from contracts import headers as h
from service.config import Settings
from service.entrypoints import lookups
from service.entrypoints.messaging import field_path, is_transient, reply_address


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (AutoReconnect("reset"), True),
        (ServerSelectionTimeoutError("no server"), True),
        (KafkaConnectionError(), True),
        (ConnectionResetError(), True),
        (MessageSizeTooLargeError(), False),  # retrying forever would block the partition
        (DuplicateKeyError("dup"), False),
        (OperationFailure("bad"), False),
        (ValueError("bug"), False),
    ],
)
def test_only_outages_are_retried_without_limit(exc: BaseException, transient: bool) -> None:
    assert is_transient(exc) is transient


def test_error_fields_use_the_domain_path_style() -> None:
    assert field_path(["contact", "emails", 0, "address"]) == "contact.emails[0].address"
    assert field_path([]) == ""


def test_spring_requests_are_answered_in_spring_style() -> None:
    correlation = bytes(range(250, 256)) + bytes(10)  # not UTF-8
    address = reply_address(
        {
            h.SPRING_REPLY_TOPIC: b"routing.replies",
            h.SPRING_REPLY_PARTITION: (7).to_bytes(4, "big"),
            h.SPRING_CORRELATION_ID: correlation,
        }
    )
    assert address is not None
    assert (address.topic, address.partition, address.headers) == (
        "routing.replies",
        7,
        [(h.SPRING_CORRELATION_ID, correlation)],
    )
    faststream = reply_address({h.REPLY_TO: b"my.replies", h.CORRELATION_ID: b"abc"})
    assert faststream is not None and (faststream.topic, faststream.partition) == ("my.replies", None)
    assert faststream.headers == [(h.CORRELATION_ID, b"abc")]
    assert reply_address({}) is None


class _QuietThenBusy:
    """A consumer whose first poll finds nothing (a quiet spell), then one lookup."""

    def __init__(self) -> None:
        self.polls: list[tuple[int, int | None]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int | None) -> dict[str, list[str]]:
        self.polls.append((timeout_ms, max_records))
        return {} if len(self.polls) == 1 else {"tp": ["lookup"]}


async def test_the_lookup_subscriber_polls_again_at_once_after_a_quiet_spell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # FastStream's own batch subscriber sleeps batch_timeout_ms after an empty poll: a lookup
    # arriving then waited up to twice that long.
    async def no_pause(seconds: float) -> None:
        raise AssertionError(f"paused {seconds}s after an empty poll")

    monkeypatch.setattr(faststream_usecase, "anyio", SimpleNamespace(sleep=no_pause))
    router = KafkaRouter()
    settings = Settings(lookup_workers=7)
    lookups.build_router(settings=settings, answers=cast(lookups.Answers, None), router=router)
    (subscriber,) = router.subscribers
    assert isinstance(subscriber, BatchSubscriber)
    quiet_then_busy = _QuietThenBusy()
    consumer = cast(AIOKafkaConsumer, quiet_then_busy)
    assert await subscriber.get_msg(consumer) == ()
    assert await subscriber.get_msg(consumer) == ("lookup",)
    assert quiet_then_busy.polls == [(200, 7), (200, 7)]  # FastStream's timeout and LOOKUP_WORKERS kept
