"""Commands applied in batches: the same handlers, a fraction of the round trips.

One command alone costs five store round trips (log read, contact read, contact write, log
write, published mark) and an event publish. A batch of commands (taken in one poll, in order)
starts reading every command's log entry and contact at once, claims ahead in one insert the
addresses no earlier command of the batch contends for, applies the commands in order with
``handle_command``, and buffers their log entries, events and address releases; a flush then
publishes the events in one go, releases the addresses in one write and writes the log entries,
marked published, in one insert. Only after the flush may the caller reply and commit.

A contact is changed at most once between flushes: a second change to it flushes first. Were it
changed twice before its log entries were written, a crash in between would leave it holding the
second command's outcome only, and a redelivery would apply the first command again.

Likewise a command refused for an address (taken, say) leaves no trace but its log entry: a later
command of the batch that waited for it, and may change what it saw (giving the address up),
flushes first. Otherwise a crash before the flush would leave the address free, and the
redelivered command would succeed where it had failed.

Commands of one batch change different contacts, so their writes may overlap: a command starts
while earlier ones are still writing, unless it claims an address (a phone number, an email, an
external id) that an earlier one in flight claims too, or an earlier one in flight may give an
address up; then it waits for those. So every command sees the addresses as it would have, one
after another, and gets the same answer.
"""

import asyncio
import dataclasses
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from contracts import commands as c
from service.domain.errors import DomainError
from service.domain.model import Address
from service.domain.normalize import normalize_email, normalize_phone
from service.service_layer import mapping
from service.service_layer.addresses import Footprint, HeldReleases, wanted_by
from service.service_layer.context import Services
from service.service_layer.handlers import handle_command
from service.service_layer.ports import (
    CommandLog,
    ContactRepository,
    JsonDict,
    LoggedOutcome,
    Outcome,
    StoredContact,
)

Key = tuple[str, str]
T = TypeVar("T")


class _PrefetchedContacts:
    """The contact repository, answering each prefetched contact's first ``get`` from its read."""

    def __init__(self, inner: ContactRepository) -> None:
        self.inner = inner
        self.prefetched: dict[str, asyncio.Task[StoredContact | None]] = {}

    async def get(self, *, customer_id: str, contact_id: str) -> StoredContact | None:
        if contact_id in self.prefetched:
            found = await self.prefetched.pop(contact_id)  # once: a retry after a lost race reads again
            if found is None or found.contact.customer_id == customer_id:
                return found
        return await self.inner.get(customer_id=customer_id, contact_id=contact_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _BufferedLog:
    """The command log, read up front and written at the flush."""

    def __init__(self, inner: CommandLog) -> None:
        self.inner = inner
        self.reads: dict[Key, asyncio.Task[LoggedOutcome | None]] = {}
        self.known: dict[Key, LoggedOutcome | None] = {}
        self.to_record: list[Outcome] = []
        self.to_mark: list[Key] = []

    async def get(self, *, customer_id: str, command_id: str) -> LoggedOutcome | None:
        key = (customer_id, command_id)
        if key not in self.known:
            read = self.reads.get(key)
            found = await (
                read if read is not None else self.inner.get(customer_id=customer_id, command_id=command_id)
            )
            self.known.setdefault(key, found)
        return self.known[key]

    async def record(self, *, outcome: Outcome) -> None:
        self.to_record.append(outcome)
        # Its events go out at the same flush: a repeat of the command in this batch answers the same.
        self.known[(outcome.customer_id, outcome.command_id)] = LoggedOutcome(outcome, published=True)

    async def mark_published(self, *, customer_id: str, command_id: str) -> None:
        if not any(o.customer_id == customer_id and o.command_id == command_id for o in self.to_record):
            self.to_mark.append((customer_id, command_id))  # logged earlier, published now


class _BufferedEvents:
    def __init__(self) -> None:
        self.events: list[JsonDict] = []

    async def publish(self, *, events: Sequence[JsonDict]) -> None:
        self.events.extend(events)


class Stopped(Exception):
    """A command of the batch failed, so no later one starts (see ``CommandBatch.failed``)."""


def footprint(command: c.ContactCommand, *, default_region: str) -> Footprint:
    """What ``command`` may claim or give up (a command whose input is invalid claims nothing)."""
    try:
        return _footprint(command, default_region=default_region)
    except DomainError:
        return Footprint(frozenset(), releases=False)


def _footprint(command: c.ContactCommand, *, default_region: str) -> Footprint:
    def phone(number: str, region: str | None) -> Address:
        e164, _ = normalize_phone(number, region=region, default_region=default_region, field="")
        return Address("phone", e164)

    def email(address: str) -> Address:
        return Address("email", normalize_email(address, field=""))

    claims: set[Address] = set()
    releases = isinstance(command, c.DeleteContact | c.RemovePhoneNumber | c.RemoveEmail)
    if isinstance(command, c.CreateContact):
        claims |= wanted_by(command.contact, default_region=default_region)
    elif isinstance(command, c.UpdateContact) and "external_id" in command.changes.model_fields_set:
        releases = True
        if command.changes.external_id:
            claims.add(Address("external", command.changes.external_id))
    elif isinstance(command, c.AddPhoneNumber):
        claims.add(phone(command.phone_number.number, command.phone_number.region))
    elif isinstance(command, c.UpdatePhoneNumber) and command.changes.number is not None:
        releases = True
        claims.add(phone(command.changes.number, command.changes.region))
    elif isinstance(command, c.AddEmail):
        claims.add(email(command.email.address))
    elif isinstance(command, c.UpdateEmail) and command.changes.address:
        releases = True
        claims.add(email(command.changes.address))
    return Footprint(frozenset(claims), releases)


class CommandBatch:
    """Applies commands in order; ``flush`` makes everything applied so far durable and announced."""

    def __init__(self, svc: Services) -> None:
        self._svc = svc
        self._contacts = _PrefetchedContacts(svc.contacts)
        self._log = _BufferedLog(svc.log)
        self._events = _BufferedEvents()
        self._addresses = HeldReleases(svc.addresses)
        self._buffered = dataclasses.replace(
            svc,
            contacts=self._contacts,  # type: ignore[arg-type]
            log=self._log,  # type: ignore[arg-type]
            events=self._events,
            addresses=self._addresses,
        )
        self._touched: set[str] = set()
        self._in_flight: list[tuple[asyncio.Task[JsonDict], Footprint]] = []
        self.failed = False
        """A started command failed: ``start`` refuses more (``Stopped``)."""

    def prefetch(self, commands: Sequence[c.ContactCommand]) -> None:
        """Start reading every command's log entry and contact (point reads, all at once), and
        claiming ahead the addresses the commands will claim, where that changes no answer; each
        command's first read or claim waits for these instead of doing it again."""
        self._claim_ahead(commands)
        for cmd in commands:
            key = (cmd.customer_id, cmd.command_id)
            if key not in self._log.reads:
                self._log.reads[key] = _background(self._svc.log.get(customer_id=key[0], command_id=key[1]))
            target = touches(cmd)
            if target is not None and target not in self._contacts.prefetched:
                read = self._svc.contacts.get(customer_id=cmd.customer_id, contact_id=target)
                self._contacts.prefetched[target] = _background(read)

    def _claim_ahead(self, commands: Sequence[c.ContactCommand]) -> None:
        """One insert for the addresses of the commands, up to the first bulk, whose claims no
        earlier command of their customer in the batch claims too or may give up."""
        ahead: dict[str, list[tuple[Address, str]]] = {}
        claimed: dict[str, set[Address]] = {}
        releasing: set[str] = set()
        for cmd in commands:
            target = touches(cmd)
            if target is None:
                break
            mine = footprint(cmd, default_region=self._svc.default_region)
            earlier = claimed.setdefault(cmd.customer_id, set())
            if mine.claims and cmd.customer_id not in releasing and not mine.claims & earlier:
                ahead.setdefault(cmd.customer_id, []).extend(
                    (a, target) for a in sorted(mine.claims, key=str)
                )
            earlier |= mine.claims
            if mine.releases:
                releasing.add(cmd.customer_id)
        for customer_id, wanted in ahead.items():
            self._addresses.claim_ahead(customer_id, wanted, now=self._svc.clock.now())

    async def close(self) -> None:
        """After the last flush: give back the addresses claimed ahead that no command used."""
        await self._addresses.release_unused()

    async def start(self, command: c.ContactCommand) -> "asyncio.Task[JsonDict]":
        """Start applying ``command`` (answered from the log if seen before), once what it must
        wait for is done; the task gives its reply. Not durable until ``flush``."""
        target = touches(command)
        if target is None or target in self._touched:
            await self.flush()
        self._stop_after_a_failure()
        if target is None:  # a bulk command changes many contacts: alone between two flushes
            self._contacts.prefetched.clear()
            task = asyncio.create_task(handle_command(command, svc=self._buffered))
            await asyncio.wait([task])
            self.failed |= task.exception() is not None
            await self.flush()
            return task
        mine = footprint(command, default_region=self._svc.default_region)
        before = [task for task, theirs in self._in_flight if mine.waits_for(theirs)]
        if before:
            await asyncio.wait(before)
            if any(_refused(task) for task in before):
                await self.flush()
        self._stop_after_a_failure()
        self._touched.add(target)
        task = asyncio.create_task(handle_command(command, svc=self._buffered))
        self._in_flight.append((task, mine))
        return task

    def _stop_after_a_failure(self) -> None:
        """No command starts after one has failed: it might depend on the failed one's effect."""
        self.failed |= any(task.done() and task.exception() is not None for task, _ in self._in_flight)
        if self.failed:
            raise Stopped

    async def apply(self, command: c.ContactCommand) -> JsonDict:
        """``start`` and wait: the reply (or the command's exception)."""
        return await (await self.start(command))

    async def flush(self) -> None:
        """Wait for the commands started; publish their events (and release the addresses given
        up), then write their log entries, marked published. A command that failed leaves no trace
        here: its task holds the exception."""
        if self._in_flight:
            await asyncio.wait([task for task, _ in self._in_flight])
            self.failed |= any(task.exception() is not None for task, _ in self._in_flight)
            self._in_flight.clear()
        events, to_record, to_mark = self._events.events, self._log.to_record, self._log.to_mark
        self._events.events, self._log.to_record, self._log.to_mark = [], [], []
        self._touched.clear()
        publish = self._svc.events.publish(events=events) if events else asyncio.sleep(0)
        await asyncio.gather(publish, self._addresses.write())
        if to_record:
            await self._svc.log.record_many(outcomes=to_record, published=True)
        for customer_id, command_id in to_mark:
            await self._svc.log.mark_published(customer_id=customer_id, command_id=command_id)


def _refused(task: "asyncio.Task[JsonDict]") -> bool:
    """The command was answered with an error (its reply is all that records it)."""
    return not task.exception() and task.result().get("ok") is False


def _background(read: Coroutine[Any, Any, T]) -> "asyncio.Task[T]":
    """A read started now; its failure surfaces where it is awaited (or nowhere if never used)."""
    task = asyncio.create_task(read)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return task


def touches(command: c.ContactCommand) -> str | None:
    """The one contact a command may change, or None for a bulk command."""
    if isinstance(command, c.CreateContact):
        return mapping.derived_id("contact", command.customer_id, command.command_id)
    contact_id = getattr(command, "contact_id", None)
    return contact_id if isinstance(contact_id, str) else None
