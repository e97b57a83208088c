"""Writes the AsyncAPI document generated from the application: ``python -m service.asyncapi``.

The committed copy is docs/asyncapi.json; tests/unit/test_asyncapi.py fails when it drifts. The
same command writes the per-message JSON Schemas under docs/schemas/ (``service.schemas``).

FastStream's generated spec is the base (info, servers, channels with their descriptions and
bindings, one operation per subscriber and publisher); it knows one payload per channel, and a
raw batch subscriber's payload only as "a list". Every catalogued channel's messages are therefore
rebuilt from ``service.catalogue``: one message per type with its payload, its headers and its
Kafka key, and every request operation gets its ``reply`` (the reply messages, sent to the
request's ``reply_to`` header). All schemas come from the ``contracts`` models.
"""

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from service import schemas
from service.bootstrap import build
from service.catalogue import Direction, Message, Topic, catalogue
from service.config import Settings

DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.json"

BINDING_VERSION = "0.4.0"  # FastStream's Kafka bindings
CORRELATION = {"location": "$message.header#/correlation_id"}
REPLY_ADDRESS = {
    "location": "$message.header#/reply_to",
    "description": "The request's reply_to header (FastStream's convention). A request using Spring "
    "Kafka's convention is answered on its kafka_replyTopic (and kafka_replyPartition) instead; "
    "one without either is applied but not answered.",
}


def base_spec() -> dict[str, Any]:
    """FastStream's document for default settings (no topic prefix)."""
    # Defaults only: the environment (a test cluster, a prefix) must not leak into the document.
    application = build(Settings.model_construct())
    spec: dict[str, Any] = json.loads(application.app.schema.to_specification().to_json())
    return spec


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(path)}


def _asyncapi_schema(schema: Any) -> Any:
    """A pydantic JSON schema as an AsyncAPI Schema Object: there, ``discriminator`` is the name of
    the property (pydantic writes OpenAPI's object with ``propertyName``)."""
    if isinstance(schema, dict):
        return {
            k: (v["propertyName"] if k == "discriminator" and isinstance(v, dict) else _asyncapi_schema(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_asyncapi_schema(v) for v in schema]
    return schema


class _Schemas:
    """Every model's schema, each under components/schemas, shared definitions once."""

    def __init__(self, topics: tuple[Topic, ...]) -> None:
        wanted: dict[tuple[type[BaseModel], schemas.Mode], None] = {}
        for topic in topics:
            for message in topic.messages:
                for model in (message.model, message.headers):
                    if model is not None:
                        wanted[(model, schemas.mode(topic.direction))] = None
            for model in (*topic.replies, topic.reply_headers):
                if model is not None:
                    wanted[(model, "serialization")] = None
        refs, defs = models_json_schema(
            list(wanted), by_alias=True, ref_template="#/components/schemas/{model}"
        )
        self._refs = refs
        self.components: dict[str, Any] = _asyncapi_schema(defs.get("$defs", {}))

    def ref(self, model: type[BaseModel], direction: Direction) -> dict[str, Any]:
        found: dict[str, Any] = dict(self._refs[(model, schemas.mode(direction))])
        return found


def _message(message: Message, topic: Topic, found: _Schemas) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": message.name,
        "title": message.name,
        "contentType": "application/json" if message.model is not None else "application/octet-stream",
        "payload": (
            found.ref(message.model, topic.direction)
            if message.model is not None
            else TypeAdapter(bytes).json_schema()
        ),
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": f"Key: {topic.key}."},
                "bindingVersion": BINDING_VERSION,
            }
        },
    }
    if message.summary:
        body["summary"] = message.summary
    if message.headers is not None:
        body["headers"] = found.ref(message.headers, topic.direction)
        if "correlation_id" in message.headers.model_json_schema(by_alias=True)["properties"]:
            body["correlationId"] = CORRELATION
    return body


def _reply(model: type[BaseModel], topic: Topic, found: _Schemas) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": model.__name__,
        "title": model.__name__,
        "contentType": "application/json",
        "payload": found.ref(model, "out"),
        "correlationId": CORRELATION,
    }
    if topic.reply_headers is not None:
        body["headers"] = found.ref(topic.reply_headers, "out")
    summary = " ".join((model.__doc__ or "").split())
    if summary and model.__doc__ != BaseModel.__doc__:
        body["summary"] = summary
    return body


def complete(spec: dict[str, Any]) -> dict[str, Any]:
    """FastStream's ``spec`` with every catalogued channel's messages, headers and replies."""
    topics = catalogue()
    by_address = {channel["address"]: key for key, channel in spec["channels"].items()}
    missing = sorted(set(by_address) ^ {t.address for t in topics})
    if missing:
        raise LookupError(f"channels and service.catalogue disagree on {missing}: catalogue them")
    found = _Schemas(topics)
    messages: dict[str, Any] = {}
    operations = spec["operations"]
    for topic in topics:
        key = by_address[topic.address]
        channel = spec["channels"][key]
        channel["messages"] = {}
        for message in topic.messages:
            messages[message.name] = _message(message, topic, found)
            channel["messages"][message.name] = _ref("components", "messages", message.name)
        operation = operations[key]
        operation["messages"] = [_ref("channels", key, "messages", m.name) for m in topic.messages]
        if not topic.replies:
            continue
        replies = f"{key}-replies"
        spec["channels"][replies] = {
            "address": None,
            "title": replies,
            "description": f"The reply topic a {key} request names in its reply_to header; its "
            "correlation_id comes back on the reply.",
            "messages": {m.__name__: _ref("components", "messages", m.__name__) for m in topic.replies},
        }
        for model in topic.replies:
            messages[model.__name__] = _reply(model, topic, found)
        operation["reply"] = {
            "address": REPLY_ADDRESS,
            "channel": _ref("channels", replies),
            "messages": [_ref("channels", replies, "messages", m.__name__) for m in topic.replies],
        }
    spec["components"] = {"messages": messages, "schemas": found.components}
    return spec


def render() -> str:
    """The document for default settings (no topic prefix), pretty-printed and stable."""
    return json.dumps(complete(base_spec()), indent=2, sort_keys=True) + "\n"


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DOCUMENT
    target.write_text(render())
    print(f"wrote {target}")
    if len(sys.argv) <= 1:
        print(f"wrote {schemas.write()} schemas under {schemas.ROOT}")


if __name__ == "__main__":
    main()
