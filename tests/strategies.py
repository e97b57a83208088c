"""Hypothesis strategies shared by the property-based tests (state machine, tenant isolation,
hostile input against the running service).

Addresses come from small pools, each phone number in several formats, so generated operations
keep colliding: the same number entered twice, by two contacts, by two customers.
"""

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from contracts.models import ContactInput, EmailInput, PhoneNumberInput

CUSTOMERS = ("cust-alpha", "cust-bravo")
"""Two tenants that use the same numbers, emails and external ids."""


@dataclass(frozen=True)
class PhoneSpec:
    """A phone number as entered, and the E.164 form the service must make of it (None: invalid)."""

    raw: str
    e164: str | None


@dataclass(frozen=True)
class EmailSpec:
    """An email as entered, and the address the service must store (None: invalid)."""

    raw: str
    address: str | None


_E164 = ("+15550100001", "+15550100002", "+15550100003", "+15550100004")


def _formats(e164: str) -> list[str]:
    area, exchange, line = e164[2:5], e164[5:8], e164[8:]
    return [e164, f"({area}) {exchange}-{line}", f"{area}-{exchange}-{line}", f"+1 {area} {exchange} {line}"]


VALID_PHONES = tuple(PhoneSpec(raw, e164) for e164 in _E164 for raw in _formats(e164))
INVALID_PHONES = (PhoneSpec("not a phone", None), PhoneSpec("12", None))

_EMAILS = ("ann@example.com", "bob@example.org", "shared@example.net")
VALID_EMAILS = tuple(
    EmailSpec(raw, address)
    for address in _EMAILS
    # Only the domain's case varies: lowercasing a domain is what every mail system does.
    for raw in (address, address.split("@")[0] + "@" + address.split("@")[1].upper())
)
INVALID_EMAILS = (EmailSpec("ab@", None), EmailSpec("no-at-sign", None))

EXTERNAL_IDS = ("crm-1", "crm-2", "crm-3")
TAGS = ("vip", "lead", "blocked")
NAMES = ("Ada", "Bob", "Cy", "")

valid_phones = st.sampled_from(VALID_PHONES)
phones = st.one_of(valid_phones, valid_phones, valid_phones, st.sampled_from(INVALID_PHONES))
valid_emails = st.sampled_from(VALID_EMAILS)
emails = st.one_of(valid_emails, valid_emails, valid_emails, st.sampled_from(INVALID_EMAILS))
external_ids = st.sampled_from(("", *EXTERNAL_IDS))
tags = st.sampled_from(TAGS)
names = st.sampled_from(NAMES)


@dataclass(frozen=True)
class ContactSpec:
    """A contact input, with what each of its addresses must normalize to."""

    first_name: str
    company: str
    external_id: str
    phones: tuple[tuple[PhoneSpec, bool], ...]
    """(number, is_primary)"""
    emails: tuple[tuple[EmailSpec, bool], ...]
    tags: tuple[str, ...]

    def wire(self) -> dict[str, Any]:
        """The contact input as a caller sends it."""
        return {
            "first_name": self.first_name,
            "company": self.company,
            "external_id": self.external_id,
            "phone_numbers": [{"number": p.raw, "is_primary": primary} for p, primary in self.phones],
            "emails": [{"address": e.raw, "is_primary": primary} for e, primary in self.emails],
            "tag_ids": list(self.tags),
        }


contact_specs = st.builds(
    ContactSpec,
    first_name=names,
    company=st.sampled_from(("", "Acme", "Globex")),
    external_id=external_ids,
    phones=st.lists(st.tuples(phones, st.booleans()), max_size=3).map(tuple),
    emails=st.lists(st.tuples(emails, st.booleans()), max_size=2).map(tuple),
    tags=st.lists(tags, max_size=3).map(tuple),
)

# --- hostile input ---

OPERATORS: tuple[Any, ...] = (
    {"$ne": None},
    {"$gt": ""},
    {"$where": "function() { return true; }"},
    {"$regex": ".*"},
    {"$exists": True},
    {"$in": ["", None]},
    "{'$ne': null}",
    "$where",
    "a.$b",
    "",
)
"""Shapes of MongoDB operator injection, and strings a store might read as an operator or path."""

HUGE = "A" * (1024 * 1024)
"""1 MB in one string field."""


def nested(depth: int) -> Any:
    """``depth`` levels of lists and dicts: {"a": [{"a": [...]}]}."""
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


DEEP = nested(1000)

weird_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.sampled_from(("\x00", "\ud7ff", "\u202e", "😀" * 10, " ", "null", "true", "[]")),
)
hostile_values = st.one_of(
    st.sampled_from(OPERATORS),
    weird_scalars,
    st.just(DEEP),
    st.just(HUGE),
    st.lists(weird_scalars, max_size=4),
    st.dictionaries(st.text(max_size=5), weird_scalars, max_size=3),
    st.recursive(
        weird_scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
        max_leaves=10,
    ),
)


def to_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


phone_inputs = st.builds(PhoneNumberInput, number=st.sampled_from([p.raw for p in VALID_PHONES]))
email_inputs = st.builds(EmailInput, address=st.sampled_from([e.raw for e in VALID_EMAILS]))
contact_inputs = st.builds(
    ContactInput,
    phone_numbers=st.lists(phone_inputs, max_size=2),
    emails=st.lists(email_inputs, max_size=2),
    tag_ids=st.lists(tags, max_size=2),
)
"""Valid-ish contact inputs built from the contract model (may still clash or repeat a number)."""
