"""The committed AsyncAPI document is the one the code generates, and it documents every message,
reply and header."""

import json
from typing import Any

import pytest

from contracts import headers as h
from contracts import topics
from contracts.sync import CrmContactDeleted, CrmContactUpserted
from service.asyncapi import DOCUMENT, render
from service.catalogue import catalogue


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(render())
    return parsed


def _channel(document: dict[str, Any], topic: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(k, c) for k, c in document["channels"].items() if c["address"] == topic]
    return found


def _deref(document: dict[str, Any], ref: dict[str, Any]) -> Any:
    node: Any = document
    for part in ref["$ref"].removeprefix("#/").split("/"):
        node = node[part]
    return _deref(document, node) if isinstance(node, dict) and "$ref" in node else node


def test_committed_asyncapi_document_matches_the_code() -> None:
    assert DOCUMENT.read_text() == render(), "docs/asyncapi.json drifted: run `python -m service.asyncapi`"


@pytest.mark.parametrize("topic", topics.ALL)
def test_every_topic_is_documented_with_a_description(topic: str) -> None:
    channels = json.loads(render())["channels"].values()
    described = {c["address"]: c.get("description", "") for c in channels}
    assert described.get(topic), f"{topic} missing or undescribed in the AsyncAPI document"


@pytest.mark.parametrize("topic", topics.ALL)
def test_every_message_type_is_a_message_of_its_channel(document: dict[str, Any], topic: str) -> None:
    key, channel = _channel(document, topic)
    (entry,) = [t for t in catalogue() if t.address == topic]
    assert set(channel["messages"]) == {m.name for m in entry.messages}
    operation = document["operations"][key]
    assert len(operation["messages"]) == len(entry.messages)


def test_crm_sync_messages_are_the_sync_union(document: dict[str, Any]) -> None:
    _, channel = _channel(document, topics.CRM_SYNC)
    for name, model in (
        ("crm_contact_upserted", CrmContactUpserted),
        ("crm_contact_deleted", CrmContactDeleted),
    ):
        payload = _deref(document, _deref(document, channel["messages"][name])["payload"])
        assert payload["properties"]["type"]["const"] == name
        assert set(payload["required"]) == set(model.model_json_schema()["required"])


@pytest.mark.parametrize(
    ("topic", "replies"),
    [
        (topics.COMMANDS, {"ContactReply", "BulkCreateReply", "BulkDeleteReply", "ErrorReply"}),
        (topics.QUERIES, {"ContactReply", "ContactListReply", "ErrorReply"}),
        (topics.LOOKUPS, {"ContactReply", "BatchLookupReply", "ErrorReply"}),
    ],
)
def test_requests_document_their_replies(document: dict[str, Any], topic: str, replies: set[str]) -> None:
    key, _ = _channel(document, topic)
    reply = document["operations"][key]["reply"]
    assert reply["address"]["location"] == "$message.header#/reply_to"
    assert {_deref(document, m)["name"] for m in reply["messages"]} == replies


@pytest.mark.parametrize(
    ("topic", "names"),
    [
        (topics.COMMANDS, {h.REPLY_TO, h.CORRELATION_ID, h.DEADLINE, h.SPRING_REPLY_TOPIC}),
        (topics.LOOKUPS, {h.SPRING_REPLY_PARTITION, h.SPRING_CORRELATION_ID}),
        (topics.EVENTS, {"event_type", "event_id"}),
        (topics.DEAD_LETTERS, set(h.DEAD_LETTER_HEADERS)),
    ],
)
def test_headers_are_documented(document: dict[str, Any], topic: str, names: set[str]) -> None:
    _, channel = _channel(document, topic)
    for ref in channel["messages"].values():
        headers = _deref(document, _deref(document, ref)["headers"])
        assert names <= set(headers["properties"])
