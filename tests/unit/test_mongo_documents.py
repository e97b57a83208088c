"""The contact document mapping: what is written is what is read back, without stored copies."""

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from contracts import commands as c
from contracts.models import format_timestamp, parse_timestamp
from service.adapters.mongo.documents import (
    _ReplyRefs,
    contact_to_doc,
    log_doc,
    outcome_to_doc,
    stored_contact,
)
from service.domain.model import Contact
from service.service_layer.context import Services
from service.service_layer.handlers import handle_command
from service.service_layer.mapping import contact_json
from service.service_layer.ports import Outcome
from tests.unit.fakes import FakeCommandLog, FakeContacts, make_services

CUST = "5e4a0680-804e-11ec-8477-2fea5968d85b"


def _rows(svc: Services) -> list[tuple[Contact, Outcome | None]]:
    assert isinstance(svc.contacts, FakeContacts)
    return list(svc.contacts.rows.values())


async def _applied(*commands: c.ContactCommand) -> tuple[Contact, Outcome]:
    svc = make_services()
    for command in commands:
        await handle_command(command, svc=svc)
    [(contact, outcome)] = _rows(svc)
    assert outcome is not None
    return contact, outcome


def _create() -> c.CreateContact:
    return c.CreateContact.model_validate(
        {
            "command_id": "cmd-1",
            "customer_id": CUST,
            "contact": {
                "first_name": "John",
                "phone_numbers": [{"number": "(555) 123-4567 ext. 89", "region": "US", "is_primary": True}],
                "emails": [{"address": "John@Example.com", "type": "work"}],
                "tag_ids": ["vip"],
            },
        }
    )


async def test_created_contact_and_its_outcome_read_back_equal() -> None:
    contact, outcome = await _applied(_create())
    stored = stored_contact(contact_to_doc(contact, outcome))
    assert stored.contact == contact
    assert stored.last_outcome == outcome
    assert outcome.events and outcome.reply["result"]["id"] == contact.id


async def test_updated_contact_and_its_outcome_read_back_equal() -> None:
    first, _ = await _applied(_create())
    update = c.UpdateContact.model_validate(
        {
            "command_id": "cmd-2",
            "customer_id": CUST,
            "contact_id": first.id,
            "changes": {"company": "Acme"},
        }
    )
    contact, outcome = await _applied(_create(), update)
    assert outcome.command_id == "cmd-2" and outcome.events[0]["changed_fields"] == ["company"]
    stored = stored_contact(contact_to_doc(contact, outcome))
    assert stored.last_outcome == outcome


async def test_the_document_is_the_wire_form_under_its_id() -> None:
    contact, outcome = await _applied(_create())
    doc = contact_to_doc(contact, outcome)
    own = {k: v for k, v in doc.items() if k not in {"_id", "version", "last_outcome"}}
    assert {"id": doc["_id"], **own} == contact_json(contact)
    assert doc["version"] == contact.version


async def test_the_document_holds_the_contact_once() -> None:
    contact, outcome = await _applied(_create())
    doc = contact_to_doc(contact, outcome)
    assert repr(doc).count("John@Example.com".lower()) == 1  # the email appears in the contact fields only
    assert doc["last_outcome"]["reply"]["result"] == "=contact"
    assert doc["last_outcome"]["events"][0]["contact"] == "=contact"


async def test_an_outcome_naming_another_state_is_stored_verbatim() -> None:
    contact, outcome = await _applied(_create())
    older = dict(outcome.reply["result"], first_name="Johnny")
    foreign = dataclasses.replace(outcome, reply={**outcome.reply, "result": older})
    stored = stored_contact(contact_to_doc(contact, foreign))
    assert stored.last_outcome == foreign


async def _bulk_of_two() -> Services:
    svc = make_services()
    command = c.BulkCreateContacts.model_validate(
        {
            "command_id": "bulk-1",
            "customer_id": CUST,
            "contacts": [{"first_name": "Ann"}, {"first_name": "Bo"}],
        }
    )
    await handle_command(command, svc=svc)
    return svc


async def test_a_bulk_item_outcome_holds_the_contact_once_and_reads_back_equal() -> None:
    svc = await _bulk_of_two()
    rows = _rows(svc)
    assert len(rows) == 2
    for contact, outcome in rows:
        doc = contact_to_doc(contact, outcome)
        assert doc["last_outcome"]["reply"]["contact"] == "=contact"
        assert stored_contact(doc).last_outcome == outcome


async def test_a_command_log_entry_holds_each_contact_once_and_reads_back_equal() -> None:
    svc = await _bulk_of_two()
    assert isinstance(svc.log, FakeCommandLog)
    [entry] = svc.log.entries.values()
    doc = outcome_to_doc(entry.outcome)
    stored = log_doc(entry.outcome)
    assert [e["contact"] for e in stored["events"]] == [f"=reply:{x['id']}" for x in doc["reply"]["contacts"]]
    assert _ReplyRefs(doc["reply"]).inflate(stored) == doc
    # An event naming a state other than the reply's is stored as it is.
    changed = {
        **doc,
        "events": [{**doc["events"][0], "contact": {**doc["events"][0]["contact"], "notes": "x"}}],
    }
    refs = _ReplyRefs(changed["reply"])
    assert refs.compact(changed) == changed and refs.inflate(changed) == changed


@given(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(min_value=-12 * 60, max_value=14 * 60),
)
def test_stored_timestamps_read_back_as_the_same_utc_instant(when: datetime, offset_minutes: int) -> None:
    instant = when.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    stored = format_timestamp(instant)
    assert stored.endswith("Z") and len(stored) == 27  # fixed width: sorts as instants
    back = parse_timestamp(stored)
    assert back == instant and back.utcoffset() == timedelta(0)
    assert back == datetime.strptime(stored, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
