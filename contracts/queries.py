"""Queries: read requests on ``topics.QUERIES`` (get, list) and ``topics.LOOKUPS`` (lookups)."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from contracts.models import Identifier

MAX_PAGE_SIZE = 100
MAX_BATCH_LOOKUP = 100


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: Identifier


class GetContact(_Query):
    type: Literal["get_contact"] = "get_contact"
    contact_id: Identifier


class ListContacts(_Query):
    """Newest first. ``page_token`` is opaque: pass back the previous reply's ``next_page_token``."""

    type: Literal["list_contacts"] = "list_contacts"
    page_size: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)] = 10
    page_token: Annotated[str, Field(max_length=512)] = ""


class LookupContact(_Query):
    """Who is this? Exactly one of ``phone`` (any accepted format) or ``email`` (any case)."""

    type: Literal["lookup_contact"] = "lookup_contact"
    phone: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    email: Annotated[str, Field(min_length=1, max_length=254)] | None = None
    region: Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")] | None = None

    @model_validator(mode="after")
    def _exactly_one_key(self) -> "LookupContact":
        if (self.phone is None) == (self.email is None):
            raise ValueError("give exactly one of phone or email")
        return self


class BatchLookupContacts(_Query):
    """Up to 100 phone numbers in one request; the reply answers each in order."""

    type: Literal["batch_lookup_contacts"] = "batch_lookup_contacts"
    phones: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=64)]],
        Field(min_length=1, max_length=MAX_BATCH_LOOKUP),
    ]
    region: Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")] | None = None


ContactQuery = Annotated[GetContact | ListContacts, Field(discriminator="type")]
QUERY_ADAPTER: TypeAdapter[ContactQuery] = TypeAdapter(ContactQuery)

LookupQuery = Annotated[LookupContact | BatchLookupContacts, Field(discriminator="type")]
LOOKUP_ADAPTER: TypeAdapter[LookupQuery] = TypeAdapter(LookupQuery)
