"""A dead letter as written (original headers byte for byte, the dlq_* and Spring kafka_dlt-* sets)
is what the operators' toolkit reads back and redrives."""

from typing import Any

from aiokafka import ConsumerRecord

from contracts import headers as h
from contracts.errors import Error, ErrorCode
from service.entrypoints.dead_letters import DeadLetters, original_headers
from service.entrypoints.metrics import Metrics
from service.ops import dead_letters as dl
from tests.factories import record

SPRING_ID = bytes(range(250, 256)) + bytes(10)  # binary: not UTF-8


def _record(
    topic: str, headers: list[tuple[str, bytes]], *, offset: int = 41
) -> ConsumerRecord[bytes, bytes]:
    body = b'{"type": "create_contact"}'
    return record(
        topic,
        headers=headers,
        partition=1,
        offset=offset,
        timestamp=1_764_720_000_123,
        key=b"cust-1",
        value=body,
    )


def _written(
    original: ConsumerRecord[Any, Any], error: Error, exc: BaseException, attempts: int
) -> list[tuple[str, bytes]]:
    groups = {"p.commands": "p.service.commands"}
    letters = DeadLetters(client_options={}, topic="dlq", groups=groups, metrics=Metrics())
    return [*original_headers(original.headers), *letters._reason(original, error, exc, attempts)]


def test_a_dead_letter_reads_back_with_its_origin_reason_and_original_headers() -> None:
    headers = [
        ("content-type", b"application/json"),
        (h.SPRING_CORRELATION_ID, SPRING_ID),
        ("reply_to", b"r"),
    ]
    original = _record("p.commands", headers)
    error = Error(code=ErrorCode.PROCESSING_FAILED, message="could not be applied: boom", field=None)
    stored = _record("dlq", _written(original, error, RuntimeError("boom"), 5), offset=7)
    letter = dl.parse(stored)
    assert letter.headers == headers  # byte for byte, in order: what a redrive sends back
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("p.commands", 1, 41)
    assert (letter.reason, letter.group, letter.attempts) == ("PROCESSING_FAILED", "p.service.commands", 5)
    assert (letter.key, letter.value, letter.id) == (original.key, original.value, "1:7")
    spring = dict(stored.headers)
    assert spring[h.DLT_EXCEPTION_FQCN] == b"builtins.RuntimeError"
    assert (
        int.from_bytes(spring[h.DLT_ORIGINAL_OFFSET], "big") == 41 and len(spring[h.DLT_ORIGINAL_OFFSET]) == 8
    )
    assert int.from_bytes(spring[h.DLT_ORIGINAL_TIMESTAMP], "big") == original.timestamp


def test_a_message_dead_lettered_again_after_a_redrive_carries_one_set_of_reasons() -> None:
    error = Error(code=ErrorCode.MALFORMED_MESSAGE, message="body is not JSON")
    first = _record("p.commands", _written(_record("p.commands", [("a", b"1")]), error, ValueError(), 1))
    redriven = _record("p.commands", dl.parse(first).headers)
    again = _written(redriven, error, ValueError(), 1)
    assert [k for k, _ in again].count(h.DLQ_REASON) == 1 and again[0] == ("a", b"1")


def test_dead_letters_written_before_the_spring_headers_still_read() -> None:
    legacy = [
        (h.DLQ_REASON, b"INVALID_ARGUMENT"),
        (h.DLQ_SOURCE_TOPIC, b"p.crm"),
        (h.DLQ_SOURCE_PARTITION, b"2"),
    ]
    letter = dl.parse(_record("dlq", [*legacy, (h.DLQ_SOURCE_OFFSET, b"9"), ("x", b"y")]))
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("p.crm", 2, 9)
    assert letter.headers == [("x", b"y")] and letter.attempts == 1


def test_filters_pick_by_reason_source_and_time() -> None:
    error = Error(code=ErrorCode.PROCESSING_FAILED, message="x")
    letter = dl.parse(_record("dlq", _written(_record("p.commands", []), error, ValueError(), 1)))
    assert dl.Filter(reason="PROCESSING_FAILED", source_topic="commands")(letter)
    assert not dl.Filter(reason="MALFORMED_MESSAGE")(letter)
    assert not dl.Filter(since=letter.at.replace(year=letter.at.year + 1))(letter)
