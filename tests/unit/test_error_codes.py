"""The error codes are exactly those the service sends, and every error names its field in one form
(``contact.emails[0].address``, ``contacts[3].phone_numbers[0].type``): replies to single commands,
bulk item errors, domain errors, sync results and the dead-letter ``dlq_field`` header."""

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from contracts import commands as c
from contracts import headers as h
from contracts.errors import ErrorCode, field_path
from contracts.sync import SYNC_ADAPTER
from service.domain import errors as domain_errors
from service.entrypoints.dead_letters import DeadLetters
from service.entrypoints.failures import bad_input
from service.entrypoints.metrics import Metrics
from service.service_layer.handlers import handle_command
from service.service_layer.sync import apply_sync_batch
from tests.factories import command, create_contact, record
from tests.unit.fakes import make_services

CUST = "5e4a0680-804e-11ec-8477-2fea5968d85b"
SERVICE = Path(__file__).resolve().parents[2] / "service"

CODES = [
    "INVALID_ARGUMENT",
    "MALFORMED_MESSAGE",
    "UNKNOWN_MESSAGE_TYPE",
    "CONTACT_NOT_FOUND",
    "PHONE_NUMBER_NOT_FOUND",
    "EMAIL_NOT_FOUND",
    "TAG_NOT_FOUND",
    "ADDRESS_ALREADY_EXISTS",
    "PROCESSING_FAILED",
    "UNAVAILABLE",
]
"""The final list (README's "Replies and errors" names the same)."""

FIELD = re.compile(r"^[a-z_]+(\[\d+\])*(\.[a-z_]+(\[\d+\])*)*$")
"""Names joined by dots, list positions in brackets: never ``phone_numbers.0.type``."""


def test_the_codes_are_pinned() -> None:
    assert [code.value for code in ErrorCode] == CODES


def test_the_readme_lists_exactly_the_codes() -> None:
    readme = (SERVICE.parent / "README.md").read_text()
    section = readme.split("### Replies and errors", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"`([A-Z][A-Z_]+)`", section)
    assert sorted(set(listed)) == sorted(CODES)


def _sources() -> str:
    """The service's code without its import statements."""
    lines = (line for p in sorted(SERVICE.rglob("*.py")) for line in p.read_text().splitlines())
    return "\n".join(line for line in lines if not line.startswith(("from ", "import ")))


def _domain_error_classes() -> dict[str, list[str]]:
    """code → the names of the domain error classes carrying it."""
    by_code: dict[str, list[str]] = {}
    pending = [domain_errors.DomainError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls is not domain_errors.DomainError:
            by_code.setdefault(cls.code, []).append(cls.__name__)
    return by_code


@pytest.mark.parametrize("code", CODES)
def test_every_code_is_produced_by_some_code_path(code: str) -> None:
    """Named on the wire (``ErrorCode.X``), or a domain error carrying it (mapped onto ``ErrorCode``
    by ``service_layer.mapping.to_error``) that is raised (``Name(...)``) or handed to a helper
    that raises it (``_find(..., Name, ...)``)."""
    sources = _sources()
    direct = f"ErrorCode.{code}" in sources
    raised = [
        name
        for name in _domain_error_classes().get(code, [])
        if re.search(rf"(?<!class )\b{name}\(", sources) or re.search(rf"[(,][ \t]*{name}[ \t]*[,)]", sources)
    ]
    assert direct or raised, f"{code} is listed but nothing sends it"


# --- one form of field path everywhere ---


def test_field_path_puts_positions_in_brackets() -> None:
    assert field_path(["contact", "emails", 0, "address"]) == "contact.emails[0].address"
    assert field_path(("contacts", 3, "phone_numbers", 0, "type")) == "contacts[3].phone_numbers[0].type"
    assert field_path([]) == ""


async def test_a_single_commands_schema_error_names_its_field_in_the_one_form() -> None:
    body = (
        b'{"type": "create_contact", "command_id": "1", "customer_id": "c",'
        b' "contact": {"phone_numbers": [{"number": "+15551234567", "type": "pager"}]}}'
    )
    with pytest.raises(ValidationError) as info:
        c.COMMAND_ADAPTER.validate_json(body)
    error = bad_input(info.value)
    assert (error.code, error.field) == ("INVALID_ARGUMENT", "contact.phone_numbers[0].type")
    # The dead-letter header carries the same text.
    letters = DeadLetters(client_options={}, topic="dlq", groups={}, metrics=Metrics())
    original = record("p.commands", headers=[], partition=0, offset=1, timestamp=0, key=b"c", value=body)
    written = dict(letters._reason(original, error, info.value, 1))
    assert written[h.DLQ_FIELD] == b"contact.phone_numbers[0].type"


async def test_a_bulk_items_errors_name_their_fields_in_the_one_form() -> None:
    svc = make_services()
    bulk = command(
        c.BulkCreateContacts,
        customer_id=CUST,
        contacts=[
            {"first_name": "A", "phone_numbers": [{"number": "+15550000001", "type": "pager"}]},
            {"first_name": "B", "emails": [{"address": "b@example.com", "is_primary": "maybe"}]},
            {"first_name": "C", "emails": [{"address": "c@example.com"}, {"address": "C@Example.com"}]},
            {"first_name": "D", "phone_numbers": [{"number": "not a phone"}]},
        ],
    )
    reply = await handle_command(bulk, svc=svc)
    assert [(e["index"], e["error"]["code"], e["error"]["field"]) for e in reply["errors"]] == [
        (0, "INVALID_ARGUMENT", "contacts[0].phone_numbers[0].type"),
        (1, "INVALID_ARGUMENT", "contacts[1].emails[0].is_primary"),
        (2, "ADDRESS_ALREADY_EXISTS", "contacts[2].emails[1].address"),
        (3, "INVALID_ARGUMENT", "contacts[3].phone_numbers[0].number"),
    ]
    assert all(FIELD.match(e["error"]["field"]) for e in reply["errors"])


async def test_domain_errors_name_their_fields_from_the_messages_top_level() -> None:
    svc = make_services()
    twice = await handle_command(
        create_contact(
            CUST, emails=[{"address": "a@example.com"}, {"address": "A@example.com"}], first_name="A"
        ),
        svc=svc,
    )
    assert (twice["error"]["code"], twice["error"]["field"]) == (
        "ADDRESS_ALREADY_EXISTS",
        "contact.emails[1].address",
    )
    primaries = await handle_command(
        create_contact(
            CUST,
            phone_numbers=[
                {"number": "+15550000001", "is_primary": True},
                {"number": "+15550000002", "is_primary": True},
            ],
        ),
        svc=svc,
    )
    assert (primaries["error"]["code"], primaries["error"]["field"]) == (
        "INVALID_ARGUMENT",
        "contact.phone_numbers",
    )
    created = await handle_command(create_contact(CUST, emails=[{"address": "b@example.com"}]), svc=svc)
    contact_id = created["result"]["id"]
    missing = await handle_command(
        command(c.RemoveEmail, customer_id=CUST, contact_id=contact_id, email_id="nope"), svc=svc
    )
    assert (missing["error"]["code"], missing["error"]["field"]) == ("EMAIL_NOT_FOUND", "email_id")
    for reply in (twice, primaries, missing):
        assert FIELD.match(reply["error"]["field"])


async def test_sync_results_name_their_fields_in_the_one_form() -> None:
    svc = make_services()
    message = SYNC_ADAPTER.validate_python(
        {
            "type": "crm_contact_upserted",
            "customer_id": CUST,
            "crm": "zoho",
            "external_id": "x-1",
            "crm_version": 1,
            "contact": {"emails": [{"address": "s@example.com"}, {"address": "S@EXAMPLE.COM"}]},
        }
    )
    report = await apply_sync_batch([(0, message)], svc=svc)
    assert {p: (e.code, e.field) for p, e in report.failed.items()} == {
        0: ("ADDRESS_ALREADY_EXISTS", "contact.emails[1].address")
    }
