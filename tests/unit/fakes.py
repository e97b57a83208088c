"""Hand-written fakes of the service layer's ports: dictionaries, no I/O."""

import copy
from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from service.domain.model import Address, Contact
from service.service_layer.context import Services
from service.service_layer.ports import (
    FREE,
    Claim,
    JsonDict,
    LoggedOutcome,
    Outcome,
    StoredContact,
    SyncState,
)


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 2, 7, 14, 45, 59, 38962, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class FakeContacts:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[Contact, Outcome | None]] = {}

    async def get(self, *, customer_id: str, contact_id: str) -> StoredContact | None:
        row = self.rows.get(contact_id)
        if row is None or row[0].customer_id != customer_id:
            return None
        return StoredContact(copy.deepcopy(row[0]), row[1])

    async def get_many(self, *, customer_id: str, contact_ids: Sequence[str]) -> dict[str, StoredContact]:
        found = {i: await self.get(customer_id=customer_id, contact_id=i) for i in contact_ids}
        return {i: s for i, s in found.items() if s is not None}

    async def read(self, *, customer_id: str, contact_id: str) -> Contact | None:
        stored = await self.get(customer_id=customer_id, contact_id=contact_id)
        return None if stored is None else stored.contact

    async def read_many(self, *, customer_id: str, contact_ids: Sequence[str]) -> dict[str, Contact]:
        return {
            i: s.contact
            for i, s in (await self.get_many(customer_id=customer_id, contact_ids=contact_ids)).items()
        }

    async def insert(self, *, contact: Contact, outcome: Outcome) -> bool:
        if contact.id in self.rows:
            return False
        self.rows[contact.id] = (copy.deepcopy(contact), outcome)
        return True

    async def insert_many(self, *, items: Sequence[tuple[Contact, Outcome]]) -> set[str]:
        return {
            contact.id
            for contact, outcome in items
            if not await self.insert(contact=contact, outcome=outcome)
        }

    async def replace(self, *, contact: Contact, expected_version: int, outcome: Outcome) -> bool:
        row = self.rows.get(contact.id)
        if row is None or row[0].version != expected_version or row[0].customer_id != contact.customer_id:
            return False
        self.rows[contact.id] = (copy.deepcopy(contact), outcome)
        return True

    async def replace_many(self, *, items: Sequence[tuple[Contact, int, Outcome]]) -> set[str]:
        return {
            contact.id
            for contact, version, outcome in items
            if not await self.replace(contact=contact, expected_version=version, outcome=outcome)
        }

    async def list_active(
        self, *, customer_id: str, limit: int, after: tuple[datetime, str] | None
    ) -> list[Contact]:
        rows = [c for c, _ in self.rows.values() if c.customer_id == customer_id and not c.is_deleted]
        rows.sort(key=lambda c: (c.tm_create, c.id), reverse=True)
        if after is not None:
            rows = [c for c in rows if (c.tm_create, c.id) < after]
        return [copy.deepcopy(c) for c in rows[:limit]]


class FakeAddressBook:
    def __init__(self) -> None:
        self.claims: dict[tuple[str, Address], Claim] = {}

    async def owner(self, *, customer_id: str, address: Address) -> Claim | None:
        return self.claims.get((customer_id, address))

    async def owners(self, *, customer_id: str, addresses: Sequence[Address]) -> dict[Address, Claim]:
        return {a: c for a in addresses if (c := self.claims.get((customer_id, a))) is not None}

    async def claim(
        self, *, customer_id: str, address: Address, contact_id: str, now: datetime
    ) -> Claim | None:
        existing = self.claims.get((customer_id, address))
        if existing is not None:
            return existing
        self.claims[(customer_id, address)] = Claim(contact_id, now)
        return None

    async def claim_many(
        self, *, customer_id: str, wanted: Sequence[tuple[Address, str]], now: datetime
    ) -> dict[Address, Claim]:
        taken: dict[Address, Claim] = {}
        for address, contact_id in wanted:
            existing = await self.claim(
                customer_id=customer_id, address=address, contact_id=contact_id, now=now
            )
            if existing is not None:
                taken[address] = existing
        return taken

    async def take_over(
        self, *, customer_id: str, address: Address, stale: Claim, contact_id: str, now: datetime
    ) -> bool:
        if self.claims.get((customer_id, address)) != stale:
            return False
        self.claims[(customer_id, address)] = Claim(contact_id, now)
        return True

    async def release(
        self, *, customer_id: str, address: Address, contact_id: str, keep_free: bool = False
    ) -> None:
        claim = self.claims.get((customer_id, address))
        if claim is not None and claim.contact_id == contact_id:
            if keep_free:
                self.claims[(customer_id, address)] = Claim(FREE, claim.claimed_at)
            else:
                del self.claims[(customer_id, address)]

    async def release_many(self, *, customer_id: str, released: Sequence[tuple[Address, str, bool]]) -> None:
        for address, contact_id, keep_free in released:
            await self.release(
                customer_id=customer_id, address=address, contact_id=contact_id, keep_free=keep_free
            )


class FakeCommandLog:
    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], LoggedOutcome] = {}

    async def get(self, *, customer_id: str, command_id: str) -> LoggedOutcome | None:
        return self.entries.get((customer_id, command_id))

    async def record(self, *, outcome: Outcome) -> None:
        self.entries.setdefault((outcome.customer_id, outcome.command_id), LoggedOutcome(outcome, False))

    async def record_many(self, *, outcomes: Sequence[Outcome], published: bool) -> None:
        for outcome in outcomes:
            key = (outcome.customer_id, outcome.command_id)
            self.entries.setdefault(key, LoggedOutcome(outcome, published))

    async def mark_published(self, *, customer_id: str, command_id: str) -> None:
        entry = self.entries[(customer_id, command_id)]
        self.entries[(customer_id, command_id)] = LoggedOutcome(entry.outcome, True)


class FakeSyncStates:
    def __init__(self) -> None:
        self.states: dict[tuple[str, str], SyncState] = {}
        self.fail_next = 0
        self.reads: list[tuple[str, str]] = []

    async def get_many(self, *, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], SyncState]:
        self.reads += keys
        return {k: self.states[k] for k in keys if k in self.states}

    async def put_many(
        self, *, states: Sequence[SyncState], existing: Set[tuple[str, str]] = frozenset()
    ) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("store unreachable (fake)")
        for state in states:
            self.states[(state.customer_id, state.external_id)] = state


class FakePublisher:
    def __init__(self) -> None:
        self.published: list[JsonDict] = []
        self.fail_next = 0

    async def publish(self, *, events: Sequence[JsonDict]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("broker unreachable (fake)")
        self.published.extend(events)


@dataclass(frozen=True, slots=True)
class FakeServices(Services):
    """``Services`` on the fakes, each typed as its fake (so a test reads what a fake recorded);
    any one replaced by keyword (``FakeServices(log=FailingLog())``). Being a ``Services``, it
    also has mypy check that every fake satisfies its port."""

    contacts: FakeContacts = field(default_factory=FakeContacts)
    addresses: FakeAddressBook = field(default_factory=FakeAddressBook)
    log: FakeCommandLog = field(default_factory=FakeCommandLog)
    events: FakePublisher = field(default_factory=FakePublisher)
    clock: FakeClock = field(default_factory=FakeClock)
    sync_states: FakeSyncStates = field(default_factory=FakeSyncStates)


make_services = FakeServices
"""The fakes wired as ``Services``: ``make_services(contacts=SlowContacts())``."""
