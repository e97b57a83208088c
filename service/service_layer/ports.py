"""Ports: the narrow interfaces the service layer needs from infrastructure."""

from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from service.domain.model import Address, Contact

JsonDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one command did: the reply to give and the events to publish, in wire (JSON) form.

    Stored twice: inside the contact document, atomically with the change (so a crash right
    after the write is recovered on redelivery), and in the command log (so any later replay of
    the command gives the same answer and changes nothing).
    """

    customer_id: str
    command_id: str
    command_type: str
    reply: JsonDict
    events: list[JsonDict] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LoggedOutcome:
    outcome: Outcome
    published: bool


@dataclass(frozen=True, slots=True)
class StoredContact:
    contact: Contact
    last_outcome: Outcome | None
    """The outcome written with the contact's latest change."""

    def outcome_of(self, command_id: str) -> Outcome | None:
        """The stored outcome when ``command_id`` made the latest change (it was applied), else None."""
        if self.last_outcome is not None and self.last_outcome.command_id == command_id:
            return self.last_outcome
        return None


@dataclass(frozen=True, slots=True)
class Claim:
    """Which contact an address was claimed for, and when."""

    contact_id: str
    """``FREE`` for a released claim kept (external ids' claims are never deleted)."""
    claimed_at: datetime


FREE = ""


class Clock(Protocol):
    def now(self) -> datetime: ...


class ContactRepository(Protocol):
    async def get(self, *, customer_id: str, contact_id: str) -> StoredContact | None:
        """Including soft-deleted contacts."""

    async def get_many(self, *, customer_id: str, contact_ids: Sequence[str]) -> dict[str, StoredContact]: ...

    async def read(self, *, customer_id: str, contact_id: str) -> Contact | None:
        """The contact alone (soft-deleted included), for queries: lighter than ``get``."""

    async def read_many(self, *, customer_id: str, contact_ids: Sequence[str]) -> dict[str, Contact]: ...

    async def insert(self, *, contact: Contact, outcome: Outcome) -> bool:
        """False when a contact with this id exists already."""

    async def insert_many(self, *, items: Sequence[tuple[Contact, Outcome]]) -> set[str]:
        """Insert new contacts in one round trip; returns the ids that existed already."""

    async def replace(self, *, contact: Contact, expected_version: int, outcome: Outcome) -> bool:
        """Compare-and-set on the version: False when someone else changed the contact first."""

    async def replace_many(self, *, items: Sequence[tuple[Contact, int, Outcome]]) -> set[str]:
        """``replace`` of many (contact, expected version, outcome) in one round trip; returns the
        ids of those someone else changed first (not written)."""

    async def list_active(
        self, *, customer_id: str, limit: int, after: tuple[datetime, str] | None
    ) -> list[Contact]:
        """Newest first by (tm_create, id); ``after`` is the last (tm_create, id) already seen."""


class AddressBook(Protocol):
    """Claims: at most one contact per (customer, address). Point reads by key on any store."""

    async def owner(self, *, customer_id: str, address: Address) -> Claim | None: ...

    async def owners(self, *, customer_id: str, addresses: Sequence[Address]) -> dict[Address, Claim]: ...

    async def claim(
        self, *, customer_id: str, address: Address, contact_id: str, now: datetime
    ) -> Claim | None:
        """Claim a free address; return the existing claim when it is taken (maybe by us)."""

    async def claim_many(
        self, *, customer_id: str, wanted: Sequence[tuple[Address, str]], now: datetime
    ) -> dict[Address, Claim]:
        """Claim many free (address, contact id) pairs in one round trip; returns the claims that
        were taken already (maybe by the same contact), the rest are now claimed."""

    async def take_over(
        self, *, customer_id: str, address: Address, stale: Claim, contact_id: str, now: datetime
    ) -> bool:
        """Replace a stale claim, only if it is still exactly ``stale``."""

    async def release(
        self, *, customer_id: str, address: Address, contact_id: str, keep_free: bool = False
    ) -> None:
        """Drop the claim if ``contact_id`` still holds it; with ``keep_free``, keep it owned by
        no one (``FREE``) instead: free to take, and a sign the address was claimed before."""

    async def release_many(self, *, customer_id: str, released: Sequence[tuple[Address, str, bool]]) -> None:
        """``release`` of many (address, contact id, keep_free) in one round trip."""


class CommandLog(Protocol):
    async def get(self, *, customer_id: str, command_id: str) -> LoggedOutcome | None: ...

    async def record(self, *, outcome: Outcome) -> None:
        """Idempotent: recording the same outcome twice is harmless."""

    async def record_many(self, *, outcomes: Sequence[Outcome], published: bool) -> None:
        """``record`` of many in one round trip; ``published``: their events are out already."""

    async def mark_published(self, *, customer_id: str, command_id: str) -> None: ...


class EventPublisher(Protocol):
    async def publish(self, *, events: Sequence[JsonDict]) -> None:
        """Return only once every event is durably on the broker."""


@dataclass(frozen=True, slots=True)
class SyncState:
    """The newest CRM state applied for one (customer, external_id)."""

    customer_id: str
    external_id: str
    crm: str
    order: int
    contact_id: str
    deleted: bool


class SyncStates(Protocol):
    async def get_many(self, *, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], SyncState]:
        """By (customer_id, external_id); point reads."""

    async def put_many(
        self, *, states: Sequence[SyncState], existing: Set[tuple[str, str]] = frozenset()
    ) -> None:
        """Upsert in one round trip (one writer per key: sync messages are keyed by it);
        ``existing``: the keys known to hold a state already (replaced, not inserted)."""
