"""What every handler needs, wired once in bootstrap."""

from dataclasses import dataclass
from datetime import timedelta

from service.service_layer.directory import Directory
from service.service_layer.ports import (
    AddressBook,
    Clock,
    CommandLog,
    ContactRepository,
    EventPublisher,
    SyncStates,
)


@dataclass(frozen=True, slots=True)
class Services:
    contacts: ContactRepository
    addresses: AddressBook
    log: CommandLog
    events: EventPublisher
    clock: Clock
    sync_states: SyncStates
    default_region: str = "US"
    claim_grace: timedelta = timedelta(seconds=30)
    """How long a claim whose owner does not (yet) hold the address still counts: covers the gap
    between claiming an address and writing the contact that holds it."""
    directory: Directory | None = None
    """Answers lookups from memory when it may be trusted; None: every lookup reads the store."""
