"""Emails are validated and normalized by email-validator; the key they are stored, claimed and
matched as is the same for an internationalized domain in Unicode and in punycode, and unchanged,
for every ASCII address, from the key the earlier rule gave it (stored addresses keep matching)."""

import re
from typing import Any

import pytest

from contracts import commands as c
from contracts import queries as q
from contracts.replies import ContactReply
from service.domain.errors import InvalidArgument
from service.domain.normalize import normalize_email
from service.service_layer.handlers import handle_command
from service.service_layer.queries import lookup_contact
from tests.factories import command, create_contact, present
from tests.unit.fakes import make_services

CUST = "5e4a0680-804e-11ec-8477-2fea5968d85b"

_OLD_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def old_key(address: str) -> str | None:
    """The rule before email-validator, kept as the reference: the whole address stripped and
    lowercased, checked by a permissive regex (None: refused)."""
    cleaned = address.strip().lower()
    if len(cleaned) > 254 or not _OLD_EMAIL.match(cleaned):
        return None
    return cleaned


ASCII_ADDRESSES = [
    "john@acme.com",
    "John@Acme.com",
    "JOHN.SMITH@ACME.COM",
    " john.smith@acme.com ",
    "\tjane.doe@example.org\n",
    "john.smith+crm@gmail.com",
    "First.Last+Tag-1@Sub.Domain.Example.co.uk",
    "o'brien@example.ie",
    "user_name@example.com",
    "user-name@ex-ample.com",
    "UPPER_lower.Mixed123@Example123.NET",
    "a@b.co",
    "x@example.io",
    "1234567890@numbers.example",
    "!#$%&'*+/=?^_`{|}~-@example.com",
    "caller42@example.com",
    "user@xn--bcher-kva.de",
    "User@XN--BCHER-KVA.DE",
    "info@xn--mller-kva.example",
    "support@mail.xn--80ak6aa92e.com",
    "a" * 64 + "@example.com",
    "someone@" + "d" * 63 + ".example.com",
]

BAD_ADDRESSES = [
    "john..doe@example.com",  # the issue's: two dots in a row
    "user@exa_mple.com",  # the issue's: an underscore in the domain
    ".john@example.com",
    "john.@example.com",
    "john@-example.com",
    "john@example-.com",
    "john",
    "john@",
    "@acme.com",
    "john@acme",
    "jo hn@acme.com",
    "a@b@c.com",
]


@pytest.mark.parametrize("address", ASCII_ADDRESSES)
def test_every_ascii_address_keeps_the_key_the_old_rule_gave_it(address: str) -> None:
    assert address.isascii()
    expected = old_key(address)
    assert expected is not None, "the reference list holds addresses the old rule accepted"
    assert normalize_email(address, field="e") == expected


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_what_is_no_email_address_is_refused_naming_the_field(address: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize_email(address, field="contact.emails[0].address")
    assert info.value.code == "INVALID_ARGUMENT"
    assert info.value.field == "contact.emails[0].address"


@pytest.mark.parametrize(
    "address",
    [
        "user@bücher.de",
        "user@xn--bcher-kva.de",
        "USER@BÜCHER.DE",
        "user@Bücher.De",
        "User@XN--BCHER-KVA.de",
        " user@bücher.de ",
    ],
)
def test_an_internationalized_domain_gives_one_key_in_unicode_and_in_punycode(address: str) -> None:
    assert normalize_email(address, field="e") == "user@xn--bcher-kva.de"


def test_a_unicode_local_part_is_kept_and_lowercased() -> None:
    assert normalize_email("Ünï@Bücher.de", field="e") == "ünï@xn--bcher-kva.de"
    assert normalize_email("ünï@xn--bcher-kva.de", field="e") == "ünï@xn--bcher-kva.de"


def test_repeated_addresses_answer_as_the_first_time_with_each_callers_field() -> None:
    # Parses are cached: the field is not part of the key.
    assert normalize_email("a@Example.com", field="x") == normalize_email("a@example.COM", field="y")
    for field in ("email", "changes.address"):
        with pytest.raises(InvalidArgument) as info:
            normalize_email("john..doe@example.com", field=field)
        assert info.value.field == field


def create(command_id: str, *emails: str, **contact: Any) -> c.CreateContact:
    return create_contact(
        CUST,
        command_id=command_id,
        first_name=contact.pop("first_name", "Jürgen"),
        emails=[{"address": e, "type": "work"} for e in emails],
        **contact,
    )


@pytest.mark.parametrize("address", ["john..doe@example.com", "user@exa_mple.com"])
async def test_the_issues_examples_are_refused_by_every_command_naming_the_field(address: str) -> None:
    svc = make_services()
    created = await handle_command(create("cmd-1", address), svc=svc)
    assert created["ok"] is False
    assert (created["error"]["code"], created["error"]["field"]) == (
        "INVALID_ARGUMENT",
        "contact.emails[0].address",
    )

    fine = await handle_command(create("cmd-2", "jurgen@example.com"), svc=svc)
    contact_id, email_id = fine["result"]["id"], fine["result"]["emails"][0]["id"]
    added = await handle_command(
        command(c.AddEmail, customer_id=CUST, contact_id=contact_id, email={"address": address}), svc=svc
    )
    assert (added["error"]["code"], added["error"]["field"]) == ("INVALID_ARGUMENT", "email.address")
    updated = await handle_command(
        command(
            c.UpdateEmail,
            customer_id=CUST,
            contact_id=contact_id,
            email_id=email_id,
            changes={"address": address},
        ),
        svc=svc,
    )
    assert (updated["error"]["code"], updated["error"]["field"]) == ("INVALID_ARGUMENT", "changes.address")
    bulk = await handle_command(
        command(c.BulkCreateContacts, customer_id=CUST, contacts=[{"emails": [{"address": address}]}]),
        svc=svc,
    )
    assert [(e["error"]["code"], e["error"]["field"]) for e in bulk["errors"]] == [
        ("INVALID_ARGUMENT", "contacts[0].emails[0].address")
    ]
    lookup = await lookup_contact(q.LookupContact(customer_id=CUST, email=address), svc=svc)
    assert isinstance(lookup, ContactReply)
    assert (present(lookup.error).code, present(lookup.error).field) == ("INVALID_ARGUMENT", "email")


async def test_one_address_in_unicode_and_in_punycode_belongs_to_one_contact() -> None:
    svc = make_services()
    first = await handle_command(create("cmd-1", "Jurgen@Bücher.de"), svc=svc)
    assert first["ok"] is True
    assert first["result"]["emails"][0]["address"] == "jurgen@xn--bcher-kva.de"
    second = await handle_command(create("cmd-2", "jurgen@xn--bcher-kva.de", first_name="Other"), svc=svc)
    assert second["ok"] is False
    assert (second["error"]["code"], second["error"]["field"]) == (
        "ADDRESS_ALREADY_EXISTS",
        "contact.emails[0].address",
    )
    twice = await handle_command(create("cmd-3", "a@bücher.de", "A@XN--BCHER-KVA.DE"), svc=svc)
    assert (twice["error"]["code"], twice["error"]["field"]) == (
        "ADDRESS_ALREADY_EXISTS",
        "contact.emails[1].address",
    )
    for asked in ["jurgen@bücher.de", "JURGEN@XN--BCHER-KVA.DE", "Jurgen@BÜCHER.DE"]:
        found = await lookup_contact(q.LookupContact(customer_id=CUST, email=asked), svc=svc)
        assert isinstance(found, ContactReply)  # no directory: the store answers, with a model
        assert present(found.result).id == first["result"]["id"], asked
