from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import pytest

from service.domain.errors import (
    AddressAlreadyExists,
    InvalidArgument,
    PhoneNumberNotFound,
    TagNotFound,
)
from service.domain.model import Address, Contact, NewEmail, NewPhoneNumber
from service.domain.normalize import normalize_email, normalize_phone

NOW = datetime(2026, 2, 7, 14, 45, 59, tzinfo=UTC)


def ids() -> Callable[[], str]:
    counter = iter(range(1000))
    return lambda: f"id-{next(counter)}"


@pytest.mark.parametrize(
    ("raw", "region", "e164", "ext"),
    [
        ("+15551234567", None, "+15551234567", ""),  # the seed's "possible, not valid" numbers
        ("(555) 123-4567", "US", "+15551234567", ""),
        ("555.123.4567 ext. 89", "US", "+15551234567", "89"),
        ("020 7946 0958", "GB", "+442079460958", ""),
        (
            "+44 20 7946 0958",
            "US",
            "+442079460958",
            "",
        ),  # an explicit country code wins over the hint
        ("+91 98765 43210", None, "+919876543210", ""),
    ],
)
def test_phone_numbers_normalize_to_e164(raw: str, region: str | None, e164: str, ext: str) -> None:
    assert normalize_phone(raw, region=region, default_region="US", field="f") == (e164, ext)


@pytest.mark.parametrize("raw", ["hello", "12", "+1 555", "++--", "+999 123 456 789 012 345"])
def test_what_cannot_be_a_phone_number_is_refused_naming_the_field(raw: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize_phone(raw, region=None, default_region="US", field="phone_numbers[0].number")
    assert info.value.field == "phone_numbers[0].number"


def test_repeated_numbers_answer_as_the_first_time_with_each_callers_region_and_field() -> None:
    # Parses are cached: the region hint is part of the key, the field is not.
    national = "020 7946 0958"
    assert normalize_phone(national, region="GB", default_region="US", field="a") == ("+442079460958", "")
    with pytest.raises(InvalidArgument):
        normalize_phone(national, region=None, default_region="US", field="a")  # not a US number
    assert normalize_phone(national, region="gb", default_region="US", field="b") == ("+442079460958", "")
    for field in ("phone", "phones[3]"):
        with pytest.raises(InvalidArgument) as info:
            normalize_phone("12", region=None, default_region="US", field=field)
        assert info.value.field == field


def test_emails_are_lowercased_and_validated() -> None:
    assert normalize_email(" John.Smith@ACME.com ", field="e") == "john.smith@acme.com"
    for bad in ["john", "john@", "@acme.com", "john@acme", "jo hn@acme.com", "a@b@c.com"]:
        with pytest.raises(InvalidArgument):
            normalize_email(bad, field="e")


def make_contact(
    *, phones: Sequence[NewPhoneNumber] | None = None, emails: Sequence[NewEmail] | None = None
) -> Contact:
    """John Smith with one primary mobile and one primary work email, unless given others."""
    if phones is None:
        phones = [NewPhoneNumber("+15551234567", "+15551234567", "", "mobile", True)]
    if emails is None:
        emails = [NewEmail("john@acme.com", "work", True)]
    return Contact.create(
        id="c1",
        customer_id="cust",
        fields={"first_name": "John", "last_name": "Smith"},
        phone_numbers=phones,
        emails=emails,
        tag_ids=["vip", "vip"],
        now=NOW,
        new_id=ids(),
    )


def test_create_defaults_display_name_and_dedupes_tags() -> None:
    contact = make_contact()
    assert contact.display_name == "John Smith"
    assert contact.tag_ids == ["vip"]
    assert contact.addresses() == {
        Address("phone", "+15551234567"),
        Address("email", "john@acme.com"),
    }


def test_two_primaries_on_create_are_refused() -> None:
    phones = [
        NewPhoneNumber("+15551234567", "+15551234567", "", "mobile", True),
        NewPhoneNumber("+15559876543", "+15559876543", "", "work", True),
    ]
    with pytest.raises(InvalidArgument):
        make_contact(phones=phones)


def test_marking_a_new_primary_demotes_the_old() -> None:
    contact = make_contact()
    added = contact.add_phone_number(
        NewPhoneNumber("+15553334444", "+15553334444", "", "home", True),
        now=NOW,
        new_id=lambda: "p2",
    )
    assert [p.is_primary for p in contact.phone_numbers] == [False, True]
    first = contact.phone_numbers[0]
    assert contact.update_phone_number(first.id, number=None, type=None, is_primary=True) == ["phone_numbers"]
    assert [p.is_primary for p in contact.phone_numbers] == [True, False]
    assert added.id == "p2"
    email = contact.add_email(NewEmail("j@gmail.com", "personal", True), now=NOW, new_id=lambda: "e2")
    assert [e.is_primary for e in contact.emails] == [False, True]
    assert email.is_primary


def test_same_number_twice_on_one_contact_is_a_conflict() -> None:
    contact = make_contact()
    with pytest.raises(AddressAlreadyExists):
        contact.add_phone_number(
            NewPhoneNumber("+1 555 123 4567", "+15551234567", "", "work", False),
            now=NOW,
            new_id=lambda: "x",
        )


def test_unchanged_update_reports_no_change() -> None:
    contact = make_contact()
    assert contact.update_fields({"first_name": "John"}) == []
    assert contact.update_fields({"first_name": "Jon", "company": "Acme"}) == [
        "first_name",
        "company",
    ]


def test_deleted_contact_holds_no_address_and_delete_twice_is_harmless() -> None:
    contact = make_contact()
    assert contact.delete(NOW) == ["tm_delete"]
    assert contact.addresses() == set()
    assert contact.delete(NOW) == []


def test_missing_entries_raise_not_found() -> None:
    contact = make_contact()
    with pytest.raises(PhoneNumberNotFound):
        contact.remove_phone_number("nope")
    with pytest.raises(TagNotFound):
        contact.remove_tag("nope")


def test_replace_state_keeps_ids_of_kept_entries() -> None:
    contact = make_contact()
    kept_id = contact.phone_numbers[0].id
    changed = contact.replace_state(
        fields={"company": "Acme"},
        phone_numbers=[
            NewPhoneNumber("+15551234567", "+15551234567", "", "mobile", False),
            NewPhoneNumber("+15559876543", "+15559876543", "", "work", True),
        ],
        emails=[],
        tag_ids=["vip"],
        now=NOW,
        new_id=lambda: "new",
    )
    assert changed == ["company", "phone_numbers", "emails"]
    assert [p.id for p in contact.phone_numbers] == [kept_id, "new"]
