"""The Contact aggregate: one identity record with its phone numbers, emails and tags.

Every mutator returns the names of the fields it changed (empty: nothing changed), so the
service layer can tell a no-op from a change and name the change in the event.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal, TypeVar

from service.domain.errors import (
    AddressAlreadyExists,
    DomainError,
    EmailNotFound,
    InvalidArgument,
    PhoneNumberNotFound,
    TagNotFound,
)

AddressKind = Literal["phone", "email", "external"]
IdFactory = Callable[[], str]

SCALAR_FIELDS = (
    "first_name",
    "last_name",
    "display_name",
    "company",
    "job_title",
    "notes",
    "source",
    "external_id",
)


@dataclass(frozen=True, slots=True)
class Address:
    """What makes a phone number or email unique within a customer."""

    kind: AddressKind
    value: str


@dataclass(slots=True)
class PhoneNumber:
    id: str
    number: str
    number_e164: str
    type: str
    is_primary: bool
    tm_create: datetime
    extension: str = ""

    @property
    def address(self) -> Address:
        return Address("phone", self.number_e164)


@dataclass(slots=True)
class Email:
    id: str
    address_value: str
    type: str
    is_primary: bool
    tm_create: datetime

    @property
    def address(self) -> Address:
        return Address("email", self.address_value)


@dataclass(slots=True)
class NewPhoneNumber:
    number: str
    number_e164: str
    extension: str
    type: str
    is_primary: bool


@dataclass(slots=True)
class NewEmail:
    address: str
    type: str
    is_primary: bool


@dataclass(slots=True)
class Contact:
    id: str
    customer_id: str
    source: str
    tm_create: datetime
    first_name: str = ""
    last_name: str = ""
    display_name: str = ""
    company: str = ""
    job_title: str = ""
    notes: str = ""
    external_id: str = ""
    phone_numbers: list[PhoneNumber] = field(default_factory=list)
    emails: list[Email] = field(default_factory=list)
    tag_ids: list[str] = field(default_factory=list)
    tm_update: datetime | None = None
    tm_delete: datetime | None = None
    version: int = 1

    # --- construction ---

    @classmethod
    def create(
        cls,
        *,
        id: str,
        customer_id: str,
        fields: dict[str, str],
        phone_numbers: Iterable[NewPhoneNumber],
        emails: Iterable[NewEmail],
        tag_ids: Iterable[str],
        now: datetime,
        new_id: IdFactory,
    ) -> "Contact":
        contact = cls(id=id, customer_id=customer_id, source=fields.get("source", "api"), tm_create=now)
        for name, value in _named(fields).items():
            if name in SCALAR_FIELDS:
                setattr(contact, name, value)
        phones, mails = list(phone_numbers), list(emails)
        _at_most_one_primary([p.is_primary for p in phones], "phone_numbers")
        _at_most_one_primary([e.is_primary for e in mails], "emails")
        held: set[Address] = set()  # what the contact holds so far; addresses() rebuilds it per call
        for i, phone in enumerate(phones):
            _not_twice(held, Address("phone", phone.number_e164), f"phone_numbers[{i}].number")
            contact.phone_numbers.append(
                PhoneNumber(
                    new_id(),
                    phone.number,
                    phone.number_e164,
                    phone.type,
                    phone.is_primary,
                    now,
                    phone.extension,
                )
            )
        for i, mail in enumerate(mails):
            _not_twice(held, Address("email", mail.address), f"emails[{i}].address")
            contact.emails.append(Email(new_id(), mail.address, mail.type, mail.is_primary, now))
        for tag in tag_ids:
            if tag not in contact.tag_ids:
                contact.tag_ids.append(tag)
        return contact

    # --- reads ---

    @property
    def is_deleted(self) -> bool:
        return self.tm_delete is not None

    def addresses(self) -> set[Address]:
        """The addresses this contact holds; a deleted contact holds none."""
        if self.is_deleted:
            return set()
        held = {p.address for p in self.phone_numbers} | {e.address for e in self.emails}
        if self.external_id:
            held.add(Address("external", self.external_id))
        return held

    def holds(self, address: Address) -> bool:
        return address in self.addresses()

    # --- mutators: each returns the changed field names ---

    def update_fields(self, changes: dict[str, str]) -> list[str]:
        changed = []
        for name, value in changes.items():
            if name not in SCALAR_FIELDS:
                raise InvalidArgument(f"{name} cannot be updated", field=name)
            if getattr(self, name) != value:
                setattr(self, name, value)
                changed.append(name)
        return changed

    def delete(self, now: datetime) -> list[str]:
        if self.is_deleted:
            return []
        self.tm_delete = now
        return ["tm_delete"]

    def add_phone_number(self, phone: NewPhoneNumber, *, now: datetime, new_id: IdFactory) -> PhoneNumber:
        self._ensure_not_held(Address("phone", phone.number_e164), "phone_number.number")
        entry = PhoneNumber(
            new_id(), phone.number, phone.number_e164, phone.type, False, now, phone.extension
        )
        self.phone_numbers.append(entry)
        if phone.is_primary:
            self._make_primary(self.phone_numbers, entry.id)
        return entry

    def update_phone_number(
        self,
        phone_number_id: str,
        *,
        number: tuple[str, str, str] | None,
        type: str | None,
        is_primary: bool | None,
    ) -> list[str]:
        """``number`` is (as entered, E.164, extension) when the number itself changes."""
        entry = _find(self.phone_numbers, phone_number_id, PhoneNumberNotFound, "phone_number_id")
        before = [replace(p) for p in self.phone_numbers]
        if number is not None:
            raw, e164, extension = number
            if e164 != entry.number_e164:
                self._ensure_not_held(Address("phone", e164), "changes.number")
            entry.number, entry.number_e164, entry.extension = raw, e164, extension
        if type is not None:
            entry.type = type
        if is_primary is not None:
            self._set_primary(self.phone_numbers, entry, is_primary)
        return ["phone_numbers"] if before != self.phone_numbers else []

    def remove_phone_number(self, phone_number_id: str) -> PhoneNumber:
        entry = _find(self.phone_numbers, phone_number_id, PhoneNumberNotFound, "phone_number_id")
        self.phone_numbers.remove(entry)
        return entry

    def add_email(self, mail: NewEmail, *, now: datetime, new_id: IdFactory) -> Email:
        self._ensure_not_held(Address("email", mail.address), "email.address")
        entry = Email(new_id(), mail.address, mail.type, False, now)
        self.emails.append(entry)
        if mail.is_primary:
            self._make_primary(self.emails, entry.id)
        return entry

    def update_email(
        self, email_id: str, *, address: str | None, type: str | None, is_primary: bool | None
    ) -> list[str]:
        entry = _find(self.emails, email_id, EmailNotFound, "email_id")
        before = [replace(e) for e in self.emails]
        if address is not None and address != entry.address_value:
            self._ensure_not_held(Address("email", address), "changes.address")
            entry.address_value = address
        if type is not None:
            entry.type = type
        if is_primary is not None:
            self._set_primary(self.emails, entry, is_primary)
        return ["emails"] if before != self.emails else []

    def remove_email(self, email_id: str) -> Email:
        entry = _find(self.emails, email_id, EmailNotFound, "email_id")
        self.emails.remove(entry)
        return entry

    def add_tag(self, tag_id: str) -> list[str]:
        if tag_id in self.tag_ids:
            return []
        self.tag_ids.append(tag_id)
        return ["tag_ids"]

    def remove_tag(self, tag_id: str) -> list[str]:
        if tag_id not in self.tag_ids:
            raise TagNotFound(f"tag {tag_id} is not on contact {self.id}", field="tag_id")
        self.tag_ids.remove(tag_id)
        return ["tag_ids"]

    def replace_state(
        self,
        *,
        fields: dict[str, str],
        phone_numbers: list[NewPhoneNumber],
        emails: list[NewEmail],
        tag_ids: list[str],
        now: datetime,
        new_id: IdFactory,
    ) -> list[str]:
        """Make the contact look like a full external state (bulk upsert, CRM sync).

        Entries whose number or address is kept keep their id and tm_create.
        """
        _at_most_one_primary([p.is_primary for p in phone_numbers], "phone_numbers")
        _at_most_one_primary([e.is_primary for e in emails], "emails")
        changed = self.update_fields(_named(fields) if "display_name" in fields else fields)
        phones, mails = [], []
        phone_ids = _Identities(
            "phone", self.phone_numbers, "phone_numbers[{}].number", now=now, new_id=new_id
        )
        for i, p in enumerate(phone_numbers):
            entry_id, created = phone_ids.of(p.number_e164, i)
            phones.append(
                PhoneNumber(entry_id, p.number, p.number_e164, p.type, p.is_primary, created, p.extension)
            )
        email_ids = _Identities("email", self.emails, "emails[{}].address", now=now, new_id=new_id)
        for i, e in enumerate(emails):
            entry_id, created = email_ids.of(e.address, i)
            mails.append(Email(entry_id, e.address, e.type, e.is_primary, created))
        tags = list(dict.fromkeys(tag_ids))
        for name, value in (("phone_numbers", phones), ("emails", mails), ("tag_ids", tags)):
            if value != getattr(self, name):
                setattr(self, name, value)
                changed.append(name)
        return changed

    def touch(self, now: datetime) -> None:
        """Record a change: bump the version and tm_update."""
        self.version += 1
        self.tm_update = now

    # --- rules ---

    def _ensure_not_held(self, address: Address, field_name: str) -> None:
        if address in self.addresses():
            raise _already_here(address, field_name)

    def _make_primary(self, entries: list[PhoneNumber] | list[Email], entry_id: str) -> None:
        for entry in entries:
            entry.is_primary = entry.id == entry_id

    def _set_primary(
        self, entries: list[PhoneNumber] | list[Email], entry: PhoneNumber | Email, value: bool
    ) -> None:
        if value:
            self._make_primary(entries, entry.id)  # marking a new primary demotes the old one
        else:
            entry.is_primary = False


class _Identities:
    """The id and tm_create each entry of a replacing state keeps (its address was held) or gets;
    an address given twice is refused."""

    def __init__(
        self,
        kind: str,
        held: list[PhoneNumber] | list[Email],
        field_pattern: str,
        *,
        now: datetime,
        new_id: IdFactory,
    ) -> None:
        self._kind, self._field, self._now, self._new_id = kind, field_pattern, now, new_id
        self._held: dict[str, PhoneNumber | Email] = {e.address.value: e for e in held}
        self._seen: set[str] = set()

    def of(self, value: str, index: int) -> tuple[str, datetime]:
        if value in self._seen:
            raise AddressAlreadyExists(f"{self._kind} {value} given twice", field=self._field.format(index))
        self._seen.add(value)
        old = self._held.get(value)
        return (old.id, old.tm_create) if old else (self._new_id(), self._now)


def _at_most_one_primary(flags: list[bool], field_name: str) -> None:
    if sum(flags) > 1:
        raise InvalidArgument(f"at most one of {field_name} may be primary", field=field_name)


_Entry = TypeVar("_Entry", PhoneNumber, Email)


def _find(entries: list[_Entry], entry_id: str, error: type[DomainError], field_name: str) -> _Entry:
    for entry in entries:
        if entry.id == entry_id:
            return entry
    raise error(f"{field_name} {entry_id} not found on this contact", field=field_name)


def _not_twice(held: set[Address], address: Address, field_name: str) -> None:
    if address in held:
        raise _already_here(address, field_name)
    held.add(address)


def _already_here(address: Address, field_name: str) -> AddressAlreadyExists:
    return AddressAlreadyExists(
        f"{address.kind} {address.value} is already on this contact", field=field_name
    )


def _named(fields: dict[str, str]) -> dict[str, str]:
    """A full state's fields with its display name, "first last" when it gives none: the same
    input makes the same contact whether it creates one or replaces one's state."""
    if fields.get("display_name"):
        return fields
    name = " ".join(p for p in (fields.get("first_name", ""), fields.get("last_name", "")) if p)
    return {**fields, "display_name": name}
