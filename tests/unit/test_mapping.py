"""The wire forms built by hand on the write path are exactly the contracts' pydantic forms."""

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from contracts.errors import Error, ErrorCode
from contracts.events import EVENT_ADAPTER
from contracts.models import format_timestamp
from contracts.replies import BulkItemResult
from service.domain.model import Contact, NewEmail, NewPhoneNumber
from service.service_layer import mapping
from service.service_layer.commands import change_event
from service.service_layer.items import ItemOrigin, ItemResult

text = st.text(max_size=12)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
) | st.datetimes(min_value=datetime(2000, 1, 2), timezones=st.just(timezone(timedelta(hours=-7))))


@st.composite
def contacts(draw: st.DrawFn) -> Contact:
    n = iter(range(100))
    phones = draw(
        st.lists(
            st.builds(
                NewPhoneNumber,
                number=text,
                number_e164=st.from_regex(r"\+1[2-9][0-9]{9}", fullmatch=True),
                extension=st.sampled_from(["", "12"]),
                type=st.sampled_from(["mobile", "work", "home", "fax", "other"]),
                is_primary=st.just(False),
            ),
            max_size=3,
            unique_by=lambda p: p.number_e164,
        )
    )
    emails = draw(
        st.lists(
            st.builds(
                NewEmail,
                address=st.emails().map(str.lower),
                type=st.sampled_from(["work", "personal", "other"]),
                is_primary=st.booleans(),
            ),
            max_size=2,
            unique_by=lambda e: e.address,
        ).filter(lambda es: sum(e.is_primary for e in es) <= 1)
    )
    contact = Contact.create(
        id=draw(st.uuids()).hex,
        customer_id=draw(text),
        fields=draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "first_name": text,
                    "last_name": text,
                    "company": text,
                    "notes": text,
                    "external_id": text,
                    "source": st.sampled_from(["manual", "import", "api", "sync"]),
                },
            )
        ),
        phone_numbers=phones,
        emails=emails,
        tag_ids=draw(st.lists(text, max_size=3)),
        now=draw(moments),
        new_id=lambda: f"e{next(n)}",
    )
    if draw(st.booleans()):
        contact.touch(draw(moments))
    if draw(st.booleans()):
        contact.delete(draw(moments))
    return contact


@given(contacts())
def test_contact_json_is_the_pydantic_wire_form(contact: Contact) -> None:
    assert mapping.contact_json(contact) == mapping.contact_to_wire(contact).model_dump(mode="json")


@given(contacts())
def test_set_fields_are_the_fields_not_at_their_default(contact: Contact) -> None:
    wire = mapping.contact_to_wire(contact).model_dump(exclude_defaults=True)
    expected = sorted(k for k in wire if k not in {"id", "customer_id", "tm_create"})
    assert mapping.set_fields(mapping.contact_json(contact)) == expected


@given(contacts(), st.booleans(), st.lists(text, max_size=3))
def test_change_events_are_the_contracts_events(contact: Contact, created: bool, changed: list[str]) -> None:
    event = change_event(ItemOrigin("cmd-1", "crm.contact.upserted"), contact, changed, created=created)
    parsed = EVENT_ADAPTER.validate_python(event)
    assert parsed.model_dump(mode="json") == event
    deleted = contact.is_deleted
    expected = "contact.created" if created else "contact.deleted" if deleted else "contact.updated"
    assert parsed.type == expected and parsed.contact.id == contact.id


@given(contacts())
def test_item_results_are_bulk_item_results_as_json(contact: Contact) -> None:
    own = mapping.contact_json(contact)
    ok = ItemResult(3, "created", own)
    error = Error(code=ErrorCode.ADDRESS_ALREADY_EXISTS, message="taken", field="contacts[4].emails[0]")
    bad = ItemResult(4, "failed", error=error)
    assert ok.to_json() == BulkItemResult.model_validate(ok.to_json()).model_dump(mode="json")
    assert bad.to_json() == BulkItemResult(index=4, status="failed", error=error).model_dump(mode="json")
    assert ItemResult.from_json(bad.to_json()) == bad
    assert ItemResult.from_json(ok.to_json(), index=9) == ItemResult(9, "created", own)
    assert ok.contact_id == contact.id and bad.contact_id is None


@given(moments)
def test_timestamps_read_as_the_seed_shows_them(moment: datetime) -> None:
    assert format_timestamp(moment) == moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
