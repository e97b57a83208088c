"""Between the domain's dataclasses and the wire's pydantic models."""

import uuid
from datetime import datetime

from contracts import models as wire
from contracts.errors import Error, ErrorCode
from contracts.models import format_timestamp, parse_timestamp
from service.domain.errors import DomainError
from service.domain.model import SCALAR_FIELDS, Contact, Email, NewEmail, NewPhoneNumber, PhoneNumber
from service.domain.normalize import normalize_email, normalize_phone
from service.service_layer.ports import JsonDict

# Fixed namespace: ids derived from (customer, command) are the same on every redelivery.
_NAMESPACE = uuid.UUID("0b5f6c1e-6a43-4c55-9d0e-2f3a4c0d9e11")


def derived_id(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


class DerivedIds:
    """Ids for the entries a command creates, the same each time the command is applied."""

    def __init__(self, *seed: str) -> None:
        self._seed = seed
        self._n = 0

    def __call__(self) -> str:
        self._n += 1
        return derived_id(*self._seed, str(self._n))


def to_error(exc: DomainError) -> Error:
    return Error(code=ErrorCode(exc.code), message=exc.message, field=exc.field)


def contact_json(c: Contact) -> JsonDict:
    """The contact's one wire form (``wire.Contact`` as JSON): replies, events and the stored
    document are all made from it. Built directly rather than through pydantic, which costs several
    times as much on every write; tests/unit/test_mapping.py holds the two equal."""
    return {
        "id": c.id,
        "customer_id": c.customer_id,
        "first_name": c.first_name,
        "last_name": c.last_name,
        "display_name": c.display_name,
        "company": c.company,
        "job_title": c.job_title,
        "notes": c.notes,
        "source": str(c.source),
        "external_id": c.external_id,
        "phone_numbers": [
            {
                "id": p.id,
                "number": p.number,
                "number_e164": p.number_e164,
                "extension": p.extension,
                "type": str(p.type),
                "is_primary": p.is_primary,
                "tm_create": format_timestamp(p.tm_create),
            }
            for p in c.phone_numbers
        ],
        "emails": [
            {
                "id": e.id,
                "address": e.address_value,
                "type": str(e.type),
                "is_primary": e.is_primary,
                "tm_create": format_timestamp(e.tm_create),
            }
            for e in c.emails
        ],
        "tag_ids": list(c.tag_ids),
        "tm_create": format_timestamp(c.tm_create),
        "tm_update": None if c.tm_update is None else format_timestamp(c.tm_update),
        "tm_delete": None if c.tm_delete is None else format_timestamp(c.tm_delete),
    }


def contact_from_json(d: JsonDict, *, version: int = 1) -> Contact:
    """The contact a wire form (or a stored document, which is one) describes; absent fields read
    as their defaults, so documents written before a field existed still read."""
    return Contact(
        id=d["id"],
        customer_id=d["customer_id"],
        source=d["source"],
        tm_create=parse_timestamp(d["tm_create"]),
        first_name=d.get("first_name", ""),
        last_name=d.get("last_name", ""),
        display_name=d.get("display_name", ""),
        company=d.get("company", ""),
        job_title=d.get("job_title", ""),
        notes=d.get("notes", ""),
        external_id=d.get("external_id", ""),
        phone_numbers=[
            PhoneNumber(
                p["id"],
                p["number"],
                p["number_e164"],
                p["type"],
                p["is_primary"],
                parse_timestamp(p["tm_create"]),
                p.get("extension", ""),
            )
            for p in d.get("phone_numbers", [])
        ],
        emails=[
            Email(e["id"], e["address"], e["type"], e["is_primary"], parse_timestamp(e["tm_create"]))
            for e in d.get("emails", [])
        ],
        tag_ids=list(d.get("tag_ids", [])),
        tm_update=_maybe_timestamp(d.get("tm_update")),
        tm_delete=_maybe_timestamp(d.get("tm_delete")),
        version=version,
    )


def _maybe_timestamp(value: str | None) -> datetime | None:
    return None if value is None else parse_timestamp(value)


def contact_to_wire(c: Contact) -> wire.Contact:
    return wire.Contact.model_validate(contact_json(c))


_UNSET_ON_CREATE = frozenset({"id", "customer_id", "tm_create"})
_WIRE_DEFAULTS: JsonDict = {
    name: info.default for name, info in wire.Contact.model_fields.items() if not info.is_required()
}


def set_fields(own: JsonDict) -> list[str]:
    """The fields a new contact sets, from its wire form: those not at their default."""
    return sorted(
        k
        for k, v in own.items()
        if k not in _UNSET_ON_CREATE and (k not in _WIRE_DEFAULTS or v != _WIRE_DEFAULTS[k])
    )


def new_phone(p: wire.PhoneNumberInput, *, default_region: str, field: str) -> NewPhoneNumber:
    e164, extension = normalize_phone(p.number, region=p.region, default_region=default_region, field=field)
    return NewPhoneNumber(p.number, e164, extension, p.type.value, p.is_primary)


def new_email(e: wire.EmailInput, *, field: str) -> NewEmail:
    return NewEmail(normalize_email(e.address, field=field), e.type.value, e.is_primary)


def scalar_fields(model: wire.ContactInput | wire.ContactPatch) -> dict[str, str]:
    """The scalar fields a payload actually gave (a patch's absent fields stay absent)."""
    out: dict[str, str] = {}
    for name in SCALAR_FIELDS:
        if name not in model.model_fields_set and isinstance(model, wire.ContactPatch):
            continue
        value = getattr(model, name)
        if value is None:
            continue
        out[name] = value.value if isinstance(value, wire.Source) else value
    return out
