"""The committed per-message JSON Schemas (docs/schemas/) are the ones the contracts generate."""

import json

import pytest

from contracts import topics
from contracts.commands import ContactCommand
from contracts.queries import ContactQuery, LookupQuery
from service import schemas
from service.catalogue import REPLIES, catalogue, members


def test_committed_schemas_match_the_code() -> None:
    generated, committed = schemas.render(), schemas.committed()
    assert sorted(committed) == sorted(generated), "docs/schemas drifted: run `python -m service.asyncapi`"
    drifted = [path for path, text in generated.items() if committed[path] != text]
    assert not drifted, f"docs/schemas drifted ({drifted}): run `python -m service.asyncapi`"


@pytest.mark.parametrize("topic", [t for t in topics.ALL if t != topics.DEAD_LETTERS])
def test_every_topic_has_a_schema_per_message(topic: str) -> None:
    files = {p.split("/", 1)[1] for p in schemas.render() if p.startswith(f"{topic}/")}
    (entry,) = [t for t in catalogue() if t.address == topic]
    assert {f"{m.name}.json" for m in entry.messages} <= files
    for name in files:
        schema = json.loads(schemas.render()[f"{topic}/{name}"])
        assert schema["x-topic"] == topic and schema["x-direction"] in ("in", "out")


def test_dead_letters_have_their_headers_schema() -> None:
    schema = json.loads(schemas.render()[f"{topics.DEAD_LETTERS}/headers.json"])
    assert {"dlq_reason", "dlq_source_offset", "kafka_dlt-original-topic", "kafka_deliveryAttempt"} <= set(
        schema["required"]
    )


def test_only_requests_with_a_non_default_reply_are_mapped() -> None:
    requests = {*members(ContactCommand), *members(ContactQuery), *members(LookupQuery)}
    assert set(REPLIES) <= requests
