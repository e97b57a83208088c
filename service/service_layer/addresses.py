"""Claiming phone numbers and emails so each belongs to at most one active contact per customer.

Claims are documents keyed by (customer, kind, value), so every check is a point read by key,
on MongoDB and on stores that push down nothing else. There are no multi-document transactions:
a claim is taken before the contact is written and released after, and a claim is trusted only
while its owner really holds the address (or within the grace period right after claiming).

An external id's claim is never deleted: released, it stays owned by no one (``FREE``). CRM sync
relies on it: a sync state is only ever recorded for an external id that has a claim, so a new
contact whose external id claim is taken fresh needs no read of what was applied before.
"""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from contracts.models import ContactInput
from service.domain.errors import AddressAlreadyExists
from service.domain.model import Address, Contact
from service.service_layer import mapping
from service.service_layer.context import Services
from service.service_layer.ports import FREE, AddressBook, Claim


async def claim_addresses(
    wanted: Sequence[tuple[Address, str]], *, customer_id: str, contact_id: str, svc: Services
) -> None:
    """Claim every (address, field) for ``contact_id`` or raise AddressAlreadyExists naming the field.

    On failure the claims newly taken by this call are released again, so nothing changes.
    """
    taken: list[Address] = []
    try:
        for address, field in wanted:
            if not await _claim_one(address, customer_id=customer_id, contact_id=contact_id, svc=svc):
                raise AddressAlreadyExists(
                    f"{address.kind} {address.value} already belongs to another contact",
                    field=field,
                )
            taken.append(address)
    except BaseException:
        for address in taken:
            await release(address, customer_id=customer_id, contact_id=contact_id, svc=svc)
        raise


async def _claim_one(address: Address, *, customer_id: str, contact_id: str, svc: Services) -> bool:
    for _ in range(3):
        now = svc.clock.now()
        existing = await svc.addresses.claim(
            customer_id=customer_id, address=address, contact_id=contact_id, now=now
        )
        if existing is None or existing.contact_id == contact_id:
            return True
        if not await _is_stale(existing, address, customer_id=customer_id, svc=svc):
            return False
        if await svc.addresses.take_over(
            customer_id=customer_id, address=address, stale=existing, contact_id=contact_id, now=now
        ):
            return True
    return False


async def _is_stale(claim: Claim, address: Address, *, customer_id: str, svc: Services) -> bool:
    if claim.contact_id == FREE:
        return True
    owner = await svc.contacts.read(customer_id=customer_id, contact_id=claim.contact_id)
    if owner is not None and owner.is_deleted:
        return True
    if owner is not None and owner.holds(address):
        return False
    # The owner is not written yet, or not updated yet: an in-flight claim, unless it is old.
    return svc.clock.now() - claim.claimed_at > svc.claim_grace


async def release_addresses(
    addresses: set[Address], *, customer_id: str, contact_id: str, svc: Services
) -> None:
    for address in sorted(addresses, key=lambda a: (a.kind, a.value)):
        await release(address, customer_id=customer_id, contact_id=contact_id, svc=svc)


async def release(address: Address, *, customer_id: str, contact_id: str, svc: Services) -> None:
    await svc.addresses.release_many(customer_id=customer_id, released=[release_of(address, contact_id)])


def release_of(address: Address, contact_id: str) -> "Release":
    """``contact_id`` giving ``address`` up: an external id's claim is kept, owned by no one."""
    return (address, contact_id, address.kind == "external")


def wanted_by(contact_input: ContactInput, *, default_region: str) -> set[Address]:
    """The addresses a contact made from ``contact_input`` holds (raises on an invalid one)."""
    wanted = {
        Address("phone", mapping.new_phone(p, default_region=default_region, field="").number_e164)
        for p in contact_input.phone_numbers
    }
    wanted |= {Address("email", mapping.new_email(e, field="").address) for e in contact_input.emails}
    if contact_input.external_id:
        wanted.add(Address("external", contact_input.external_id))
    return wanted


async def resolve(address: Address, *, customer_id: str, svc: Services) -> Contact | None:
    """The active contact holding ``address``, if any: two point reads by key."""
    claim = await svc.addresses.owner(customer_id=customer_id, address=address)
    if claim is None or claim.contact_id == FREE:
        return None
    owner = await svc.contacts.read(customer_id=customer_id, contact_id=claim.contact_id)
    if owner is None or not owner.holds(address):
        return None
    return owner


Release = tuple[Address, str, bool]


class HeldReleases:
    """The address book with releases held back and written together (``write``): one bulk write
    for a batch instead of one per address. An address claimed or read while its release is held
    has the held releases written first, so it is seen as one after another would see it.

    Claims may be taken ahead too (``claim_ahead``: one insert for a batch's commands that claim
    addresses no earlier command of the batch touches); a command's ``claim`` of an address taken
    ahead for its contact is then answered at once. ``release_unused`` gives back the ones no
    command used (a command that failed before claiming, or was answered from the log).
    """

    def __init__(self, inner: AddressBook) -> None:
        self.inner = inner
        self.held: dict[str, list[Release]] = {}
        self.ahead: dict[tuple[str, Address], str] = {}
        self._ahead_done: asyncio.Task[None] | None = None

    def claim_ahead(self, customer_id: str, wanted: Sequence[tuple[Address, str]], *, now: datetime) -> None:
        """Start claiming (address, contact id) pairs for the commands to come."""

        async def take() -> None:
            taken = await self.inner.claim_many(customer_id=customer_id, wanted=wanted, now=now)
            self.ahead.update({(customer_id, a): owner for a, owner in wanted if a not in taken})

        previous = self._ahead_done

        async def after_previous() -> None:
            if previous is not None:
                await previous
            await take()

        self._ahead_done = asyncio.create_task(after_previous())

    async def release_unused(self) -> None:
        if self._ahead_done is not None:
            await self._ahead_done
        unused, self.ahead = self.ahead, {}
        for (customer_id, address), owner in unused.items():
            self.held.setdefault(customer_id, []).append(release_of(address, owner))
        await self.write()

    async def release(
        self, *, customer_id: str, address: Address, contact_id: str, keep_free: bool = False
    ) -> None:
        self.held.setdefault(customer_id, []).append((address, contact_id, keep_free))

    async def release_many(self, *, customer_id: str, released: Sequence[Release]) -> None:
        self.held.setdefault(customer_id, []).extend(released)

    async def write(self) -> None:
        held, self.held = self.held, {}
        for customer_id, released in held.items():
            await self.inner.release_many(customer_id=customer_id, released=released)

    async def _before(self, customer_id: str, addresses: Sequence[Address]) -> None:
        wanted = set(addresses)
        if self._ahead_done is not None:
            await self._ahead_done
        # A claim taken ahead and still unused when another contact wants the address belongs to
        # an earlier command that ended without it (no such contact, say; a later one of the batch
        # waits for it): given back first, as one after another would have it.
        for address in wanted:
            owner = self.ahead.pop((customer_id, address), None)
            if owner is not None:
                self.held.setdefault(customer_id, []).append(release_of(address, owner))
        if any(address in wanted for address, _, _ in self.held.get(customer_id, ())):
            await self.write()

    async def owner(self, *, customer_id: str, address: Address) -> Claim | None:
        await self._before(customer_id, [address])
        return await self.inner.owner(customer_id=customer_id, address=address)

    async def owners(self, *, customer_id: str, addresses: Sequence[Address]) -> dict[Address, Claim]:
        await self._before(customer_id, addresses)
        return await self.inner.owners(customer_id=customer_id, addresses=addresses)

    async def claim(
        self, *, customer_id: str, address: Address, contact_id: str, now: datetime
    ) -> Claim | None:
        if self._ahead_done is not None:
            await self._ahead_done
        if self.ahead.get((customer_id, address)) == contact_id:
            del self.ahead[(customer_id, address)]
            return None  # taken ahead for this very contact
        await self._before(customer_id, [address])
        return await self.inner.claim(
            customer_id=customer_id, address=address, contact_id=contact_id, now=now
        )

    async def claim_many(
        self, *, customer_id: str, wanted: Sequence[tuple[Address, str]], now: datetime
    ) -> dict[Address, Claim]:
        await self._before(customer_id, [a for a, _ in wanted])
        return await self.inner.claim_many(customer_id=customer_id, wanted=wanted, now=now)

    async def take_over(
        self, *, customer_id: str, address: Address, stale: Claim, contact_id: str, now: datetime
    ) -> bool:
        await self._before(customer_id, [address])
        return await self.inner.take_over(
            customer_id=customer_id, address=address, stale=stale, contact_id=contact_id, now=now
        )


@dataclass(frozen=True, slots=True)
class Footprint:
    """The addresses a change may claim, and whether it may give any up: two changes of different
    contacts may run at once unless the later one claims what the earlier one claims too, or one
    of them may give up an address the other claims (releases are not known by address): the
    earlier one must see the address as it was before the later one."""

    claims: frozenset[Address]
    releases: bool

    def waits_for(self, earlier: "Footprint") -> bool:
        if self.claims & earlier.claims:
            return True
        return (bool(self.claims) and earlier.releases) or (self.releases and bool(earlier.claims))
