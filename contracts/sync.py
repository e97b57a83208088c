"""CRM sync: what connectors (Salesforce, HubSpot, Zoho, ...) publish on ``topics.CRM_SYNC``, and the
per-item results the service publishes on ``topics.SYNC_RESULTS`` for items it could not apply.

Key every message with :func:`sync_key` so one external contact's messages stay in order. Each
message carries the CRM's own version (``crm_version``, an increasing integer) or its
``crm_updated_at``; the service applies an external contact's newest state once and ignores (and
counts) anything not newer than what it already applied, so replaying the topic changes nothing.
"""

from datetime import datetime
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from contracts.errors import Error
from contracts.models import (
    ContactFields,
    Identifier,
    Timestamp,
)


def sync_key(customer_id: str, external_id: str) -> bytes:
    """The Kafka key of a sync message: one external contact's messages share a partition."""
    return f"{customer_id}/{external_id}".encode()


class SyncedContact(ContactFields):
    """The CRM's full view of the contact (the service sets source=sync and external_id)."""


class _SyncMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: Identifier
    crm: Identifier
    """The connector's CRM, e.g. ``salesforce``, ``hubspot``, ``zoho``."""
    external_id: Annotated[str, Field(min_length=1, max_length=256)]
    crm_version: Annotated[int, Field(ge=0)] | None = None
    """The CRM's record version; compared when given, else ``crm_updated_at``."""
    crm_updated_at: Timestamp | None = None

    @model_validator(mode="after")
    def _has_an_order(self) -> Self:
        if self.crm_version is None and self.crm_updated_at is None:
            raise ValueError("crm_version or crm_updated_at is required")
        return self

    def order(self) -> int:
        """What "newer" means for this external contact: the version, else microseconds since epoch."""
        if self.crm_version is not None:
            return self.crm_version
        assert self.crm_updated_at is not None
        return int(self.crm_updated_at.timestamp() * 1_000_000)


class CrmContactUpserted(_SyncMessage):
    type: Literal["crm_contact_upserted"] = "crm_contact_upserted"
    contact: SyncedContact


class CrmContactDeleted(_SyncMessage):
    type: Literal["crm_contact_deleted"] = "crm_contact_deleted"


SyncMessage = Annotated[CrmContactUpserted | CrmContactDeleted, Field(discriminator="type")]
SYNC_ADAPTER: TypeAdapter[SyncMessage] = TypeAdapter(SyncMessage)


class SyncResult(BaseModel):
    """An item the service could not apply (published on ``topics.SYNC_RESULTS``, same key)."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    crm: str
    external_id: str
    order: int
    status: Literal["failed"] = "failed"
    error: Error
    source_topic: str
    source_partition: int
    source_offset: int
    occurred_at: datetime
