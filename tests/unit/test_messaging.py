"""Failure classification and reply addressing, without a broker."""

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError
from pymongo.errors import AutoReconnect, DuplicateKeyError, OperationFailure, ServerSelectionTimeoutError

from contracts import headers as h
from contracts.errors import field_path
from service.entrypoints.failures import is_transient
from service.entrypoints.replies import reply_address


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
