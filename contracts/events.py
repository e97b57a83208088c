"""Contact-changed events on ``topics.EVENTS``, keyed by contact id. Past tense.

Each carries the whole contact after the change, the fields that changed, the contact's version
(1 on creation, +1 per change) and what caused it. Delivery is at least once: consumers dedupe
on ``event_id``, which is the same every time one change is (re)published.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from contracts.models import Contact, Timestamp


class Cause(BaseModel):
    model_config = ConfigDict(frozen=True)

    command_id: str
    command_type: str


class _ContactEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: str
    occurred_at: Timestamp
    customer_id: str
    contact_id: str
    version: int
    changed_fields: list[str]
    contact: Contact
    cause: Cause


class ContactCreated(_ContactEvent):
    type: Literal["contact.created"] = "contact.created"


class ContactUpdated(_ContactEvent):
    type: Literal["contact.updated"] = "contact.updated"


class ContactDeleted(_ContactEvent):
    type: Literal["contact.deleted"] = "contact.deleted"


ContactEvent = Annotated[ContactCreated | ContactUpdated | ContactDeleted, Field(discriminator="type")]
EVENT_ADAPTER: TypeAdapter[ContactEvent] = TypeAdapter(ContactEvent)
