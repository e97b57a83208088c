"""The seed's Contact, PhoneNumber and Email, as returned by the service, and their inputs."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer


def format_timestamp(value: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a ``Z``, as the seed shows: 2026-02-07T14:45:59.038962Z."""
    # isoformat, not strftime: the same text at a fraction of the cost (every contact has several).
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_timestamp(value: str) -> datetime:
    """``format_timestamp``'s text back as the instant (fromisoformat reads the "Z" since 3.11, at a
    fraction of strptime's cost)."""
    return datetime.fromisoformat(value)


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a timezone")
    return value.astimezone(UTC)


Timestamp = Annotated[datetime, AfterValidator(_to_utc), PlainSerializer(format_timestamp, return_type=str)]
ShortText = Annotated[str, Field(max_length=256)]
LongText = Annotated[str, Field(max_length=4096)]
Identifier = Annotated[str, Field(min_length=1, max_length=128)]

MAX_PHONE_NUMBERS = 20
MAX_EMAILS = 20
MAX_TAGS = 100


class Source(StrEnum):
    """How the contact was created."""

    MANUAL = "manual"
    IMPORT = "import"
    API = "api"
    SYNC = "sync"


class PhoneNumberType(StrEnum):
    MOBILE = "mobile"
    WORK = "work"
    HOME = "home"
    FAX = "fax"
    OTHER = "other"


class EmailType(StrEnum):
    WORK = "work"
    PERSONAL = "personal"
    OTHER = "other"


def _empty_list() -> Any:
    """An empty-list default built per instance, still documented as ``"default": []``."""
    return Field(default_factory=list, json_schema_extra={"default": []})


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class PhoneNumber(_Wire):
    id: str
    number: str
    """As originally entered."""
    number_e164: str
    """Normalized to E.164, without the extension; what lookups match on."""
    extension: str = ""
    type: PhoneNumberType
    is_primary: bool
    tm_create: Timestamp


class Email(_Wire):
    id: str
    address: str
    """Stored and matched in lowercase, normalized by email-validator: the domain in its ASCII
    (IDNA) form, so ``user@bücher.de`` is stored as ``user@xn--bcher-kva.de``."""
    type: EmailType
    is_primary: bool
    tm_create: Timestamp


class Contact(_Wire):
    id: str
    customer_id: str
    first_name: str = ""
    last_name: str = ""
    display_name: str = ""
    company: str = ""
    job_title: str = ""
    notes: str = ""
    source: Source
    external_id: str = ""
    phone_numbers: list[PhoneNumber] = []
    emails: list[Email] = []
    tag_ids: list[str] = []
    tm_create: Timestamp
    tm_update: Timestamp | None = None
    tm_delete: Timestamp | None = None


# --- inputs: what a payload may set. Never id, customer_id or tm_* (extra fields are refused). ---


class PhoneNumberInput(_Wire):
    number: Annotated[str, Field(min_length=1, max_length=64)]
    """E.164, or national / formatted with a region hint; an extension (``ext. 12``) is kept apart."""
    type: PhoneNumberType = PhoneNumberType.OTHER
    is_primary: bool = False
    region: Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")] | None = None
    """ISO 3166-1 alpha-2 hint for numbers not in E.164; else the service's default region."""


class PhoneNumberPatch(_Wire):
    number: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    type: PhoneNumberType | None = None
    is_primary: bool | None = None
    region: Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")] | None = None


class EmailInput(_Wire):
    address: Annotated[str, Field(min_length=3, max_length=254)]
    type: EmailType = EmailType.OTHER
    is_primary: bool = False


class EmailPatch(_Wire):
    address: Annotated[str, Field(min_length=3, max_length=254)] | None = None
    type: EmailType | None = None
    is_primary: bool | None = None


class ContactFields(_Wire):
    """What a caller or a CRM says about a contact."""

    first_name: ShortText = ""
    last_name: ShortText = ""
    display_name: ShortText = ""
    company: ShortText = ""
    job_title: ShortText = ""
    notes: LongText = ""
    # Factories, not ``= []``: pydantic deep-copies a mutable default on every validation.
    phone_numbers: Annotated[list[PhoneNumberInput], Field(max_length=MAX_PHONE_NUMBERS)] = _empty_list()
    emails: Annotated[list[EmailInput], Field(max_length=MAX_EMAILS)] = _empty_list()
    tag_ids: Annotated[list[Identifier], Field(max_length=MAX_TAGS)] = _empty_list()


class ContactInput(ContactFields):
    """A new contact's fields. ``display_name`` defaults to "first last"."""

    source: Source = Source.API
    external_id: Annotated[str, Field(max_length=256)] = ""


class ContactPatch(_Wire):
    """Partial update: only the fields present change."""

    first_name: ShortText | None = None
    last_name: ShortText | None = None
    display_name: ShortText | None = None
    company: ShortText | None = None
    job_title: ShortText | None = None
    notes: LongText | None = None
    source: Source | None = None
    external_id: Annotated[str, Field(max_length=256)] | None = None
