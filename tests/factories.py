"""Typed builders and narrowing helpers shared by the unit, integration and end-to-end tests.

Commands are built from wire-shaped fields (nested inputs as plain dicts, as a caller sends them)
and validated as the service validates a message, so each builder returns the precise model.
"""

import uuid
from typing import Any, TypeVar

from aiokafka import ConsumerRecord
from pydantic import BaseModel

from contracts import commands as c
from contracts.client import ContactClient
from contracts.models import Contact
from contracts.replies import ContactReply

T = TypeVar("T")
ModelT = TypeVar("ModelT", bound=BaseModel)
CommandT = TypeVar("CommandT", bound=c.ContactCommand)


def cid() -> str:
    """A fresh command id."""
    return str(uuid.uuid4())


def command(
    kind: type[ModelT], /, *, customer_id: str, command_id: str | None = None, **fields: Any
) -> ModelT:
    """A ``kind`` command for ``customer_id`` with ``fields`` (a fresh command id unless given):
    ``command(c.AddEmail, customer_id=ACME, contact_id=x, email={"address": "a@example.com"})``."""
    return kind.model_validate(
        {"command_id": cid() if command_id is None else command_id, "customer_id": customer_id, **fields}
    )


def create_contact(customer_id: str, *, command_id: str | None = None, **contact: Any) -> c.CreateContact:
    """A ``CreateContact`` whose contact input has exactly the given fields."""
    return command(c.CreateContact, customer_id=customer_id, command_id=command_id, contact=contact)


def present(value: T | None) -> T:
    """``value``, asserted not None: for an optional part of a reply the test expects set."""
    assert value is not None
    return value


def ok(reply: ContactReply) -> Contact:
    """The contact of a successful reply (the reply's error is the assertion's message)."""
    assert reply.ok, reply.error
    return present(reply.result)


async def send(
    client: ContactClient, kind: type[CommandT], /, *, customer_id: str, **fields: Any
) -> ContactReply:
    """Send a ``kind`` command (built by ``command``) and return its reply."""
    return await client.command(command(kind, customer_id=customer_id, **fields))


def record(
    topic: str = "t",
    *,
    headers: list[tuple[str, bytes]] | None = None,
    partition: int = 0,
    offset: int = 0,
    timestamp: int = 0,
    key: bytes = b"k",
    value: bytes = b'{"a": 1}',
) -> ConsumerRecord[bytes, bytes]:
    """A consumed Kafka record, as aiokafka hands it over."""
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=timestamp,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(value),
        headers=headers or [],
    )
