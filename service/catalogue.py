"""Every message on the wire, topic by topic: what it is (a ``contracts`` model), who sends it, the
replies a request gets and the headers it carries.

Read by the document generators only (``service.asyncapi``, ``service.schemas``), never by the
running service. The message lists come from the unions the service parses with
(``ContactCommand``, ``ContactQuery``, ``LookupQuery``, ``SyncMessage``, ``ContactEvent``), so a new
message type shows up in the documents without an edit here; only a request's reply type is
stated here (``REPLIES``), and a unit test checks that every request has one.
"""

import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts import headers as h
from contracts import topics
from contracts.commands import BulkCreateContacts, BulkDeleteContacts, ContactCommand
from contracts.errors import ErrorCode
from contracts.events import ContactEvent
from contracts.queries import BatchLookupContacts, ContactQuery, ListContacts, LookupQuery
from contracts.replies import (
    BatchLookupReply,
    BulkCreateReply,
    BulkDeleteReply,
    ContactListReply,
    ContactReply,
    ErrorReply,
)
from contracts.sync import SyncMessage, SyncResult

Direction = Literal["in", "out"]
"""``in``: other teams send it and the service reads it; ``out``: the service sends it."""


def members(union: Any) -> tuple[type[BaseModel], ...]:
    """The models of a (possibly ``Annotated``) union, in declaration order."""
    if typing.get_origin(union) is Annotated:
        union = typing.get_args(union)[0]
    return tuple(typing.get_args(union)) or (union,)


def type_name(model: type[BaseModel]) -> str:
    """A message's name: its ``type`` discriminator's value, else the model's name."""
    discriminator = model.model_fields.get("type")
    if discriminator is not None and isinstance(discriminator.default, str):
        return discriminator.default
    return model.__name__


# --- headers -------------------------------------------------------------------------------------
# Kafka header values are bytes: text headers are UTF-8 (``str``), binary ones ``bytes``.

Decimal = Annotated[str, Field(pattern=r"^-?[0-9]+$")]


class _Headers(BaseModel):
    """Other headers (``content-type``, W3C ``traceparent``, ...) may be present too."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


class RequestHeaders(_Headers):
    """Headers of a request (command, query, lookup). None is required: a request without a reply
    address is still applied, only not answered. FastStream's convention (``reply_to`` +
    ``correlation_id``) or Spring Kafka's ReplyingKafkaTemplate (``kafka_replyTopic``,
    ``kafka_replyPartition``, ``kafka_correlationId``); the reply follows the one the request used."""

    reply_to: str | None = Field(None, alias=h.REPLY_TO, description="The topic to send the reply to.")
    correlation_id: str | None = Field(
        None, alias=h.CORRELATION_ID, description="Echoed on the reply (FastStream's convention)."
    )
    kafka_reply_topic: str | None = Field(
        None,
        alias=h.SPRING_REPLY_TOPIC,
        description="Spring Kafka's reply topic; when set, it wins over reply_to.",
    )
    kafka_reply_partition: bytes | None = Field(
        None,
        alias=h.SPRING_REPLY_PARTITION,
        description="Spring Kafka's reply partition: a 4-byte big-endian integer.",
    )
    kafka_correlation_id: bytes | None = Field(
        None,
        alias=h.SPRING_CORRELATION_ID,
        description="Spring Kafka's correlation id: raw bytes (by default a 16-byte binary UUID), "
        "echoed byte for byte on the reply.",
    )
    deadline: Decimal | None = Field(
        None,
        alias=h.DEADLINE,
        description="Absolute deadline, epoch milliseconds (ASCII digits): a request already past it "
        "is counted and not answered.",
    )


class ReplyHeaders(_Headers):
    """Headers of a reply: the request's correlation id in the convention the request used."""

    correlation_id: str | None = Field(
        None, alias=h.CORRELATION_ID, description="The request's correlation_id, when it had one."
    )
    kafka_correlation_id: bytes | None = Field(
        None,
        alias=h.SPRING_CORRELATION_ID,
        description="The request's kafka_correlationId, byte for byte (Spring Kafka's convention).",
    )
    content_type: Literal["application/json"] = Field("application/json", alias="content-type")


class EventHeaders(_Headers):
    """Headers of a contact-changed event, readable without parsing the body."""

    event_type: str = Field(
        alias="event_type",
        description="The event's type, as in its body.",
        json_schema_extra={"enum": [type_name(m) for m in members(ContactEvent)]},
    )
    event_id: str = Field(alias="event_id", description="The event's id, as in its body: dedupe on it.")
    correlation_id: str | None = Field(
        None, alias=h.CORRELATION_ID, description="Set by FastStream on what it publishes."
    )


class PublishedHeaders(_Headers):
    """Headers FastStream sets on what the service publishes through it."""

    correlation_id: str | None = Field(None, alias=h.CORRELATION_ID)


class DeadLetterHeaders(_Headers):
    """What a dead letter adds to the original message's headers (kept byte for byte beside these):
    the service's ``dlq_*`` and Spring Kafka's ``kafka_dlt-*`` (DeadLetterPublishingRecoverer)."""

    dlq_reason: ErrorCode = Field(alias=h.DLQ_REASON, description="Why, as an error code.")
    dlq_message: str = Field(alias=h.DLQ_MESSAGE, description="A human-readable explanation.")
    dlq_field: str = Field(alias=h.DLQ_FIELD, description="The offending field, empty when none is known.")
    dlq_source_topic: str = Field(alias=h.DLQ_SOURCE_TOPIC, description="The original message's topic.")
    dlq_source_partition: Decimal = Field(alias=h.DLQ_SOURCE_PARTITION, description="Its partition.")
    dlq_source_offset: Decimal = Field(alias=h.DLQ_SOURCE_OFFSET, description="Its offset.")
    original_topic: str = Field(alias=h.DLT_ORIGINAL_TOPIC)
    original_partition: bytes = Field(
        alias=h.DLT_ORIGINAL_PARTITION, description="4-byte big-endian integer."
    )
    original_offset: bytes = Field(alias=h.DLT_ORIGINAL_OFFSET, description="8-byte big-endian integer.")
    original_timestamp: bytes = Field(
        alias=h.DLT_ORIGINAL_TIMESTAMP,
        description="8-byte big-endian integer: the original record's timestamp, epoch milliseconds.",
    )
    original_timestamp_type: Literal["CreateTime", "LogAppendTime"] = Field(
        alias=h.DLT_ORIGINAL_TIMESTAMP_TYPE
    )
    original_consumer_group: str = Field(alias=h.DLT_ORIGINAL_CONSUMER_GROUP)
    exception_fqcn: str = Field(
        alias=h.DLT_EXCEPTION_FQCN, description="The failure's Python class, module-qualified."
    )
    exception_message: str = Field(alias=h.DLT_EXCEPTION_MESSAGE)
    delivery_attempt: bytes = Field(
        alias=h.DELIVERY_ATTEMPT,
        description="4-byte big-endian integer: how many times the message was tried.",
    )


# --- messages and topics -------------------------------------------------------------------------

REPLIES: dict[type[BaseModel], type[BaseModel]] = {
    BulkCreateContacts: BulkCreateReply,
    BulkDeleteContacts: BulkDeleteReply,
    ListContacts: ContactListReply,
    BatchLookupContacts: BatchLookupReply,
}
"""A request's reply type, where it is not ``ContactReply``."""

FAILED_REPLY: type[BaseModel] = ErrorReply
"""The reply to a request the service could not parse (every reply type reads it too)."""


@dataclass(frozen=True)
class Message:
    name: str
    """Its ``type`` (or model name): unique within its topic."""
    model: type[BaseModel] | None
    """None: opaque bytes (a dead letter's value is the original message's)."""
    headers: type[_Headers] | None = None
    reply: type[BaseModel] | None = None
    """Requests only: the reply it gets when it asked for one."""
    summary: str = ""


@dataclass(frozen=True)
class Topic:
    address: str
    direction: Direction
    key: str
    messages: tuple[Message, ...]
    reply_headers: type[_Headers] | None = None
    replies: tuple[type[BaseModel], ...] = field(default=())
    """Requests only: every reply type the topic's requests get, ``ErrorReply`` last."""


def _doc(model: type[BaseModel] | None) -> str:
    text = (model.__doc__ or "") if model is not None else ""
    inherited = model is not None and any(text == (base.__doc__ or "") for base in model.__mro__[1:])
    return "" if inherited else " ".join(text.split())


def _requests(address: str, key: str, union: Any) -> Topic:
    messages = tuple(
        Message(
            name=type_name(model),
            model=model,
            headers=RequestHeaders,
            reply=REPLIES.get(model, ContactReply),
            summary=_doc(model),
        )
        for model in members(union)
    )
    wanted: list[type[BaseModel]] = [m.reply for m in messages if m.reply is not None]
    replies = tuple(r for i, r in enumerate([*wanted, FAILED_REPLY]) if r not in wanted[:i])
    return Topic(address, "in", key, messages, reply_headers=ReplyHeaders, replies=replies)


def catalogue() -> tuple[Topic, ...]:
    """Every topic and its messages (addresses without the deployment's topic prefix)."""
    sync_key = "customer_id/external_id (contracts.sync.sync_key)"
    return (
        _requests(topics.COMMANDS, "customer_id", ContactCommand),
        _requests(topics.QUERIES, "customer_id", ContactQuery),
        _requests(topics.LOOKUPS, "the phone or email looked up (customer_id for a batch)", LookupQuery),
        Topic(
            topics.CRM_SYNC,
            "in",
            sync_key,
            tuple(Message(type_name(m), m, summary=_doc(m)) for m in members(SyncMessage)),
        ),
        Topic(
            topics.EVENTS,
            "out",
            "contact id",
            tuple(Message(type_name(m), m, EventHeaders, summary=_doc(m)) for m in members(ContactEvent)),
        ),
        Topic(
            topics.SYNC_RESULTS,
            "out",
            sync_key,
            (Message("SyncResult", SyncResult, PublishedHeaders, summary=_doc(SyncResult)),),
        ),
        Topic(
            topics.DEAD_LETTERS,
            "out",
            "the original message's key",
            (
                Message(
                    "dead_letter",
                    None,
                    DeadLetterHeaders,
                    summary="The original message's bytes, unchanged, with the reason in headers.",
                ),
            ),
        ),
    )
