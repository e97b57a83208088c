"""Claiming phone numbers and emails so each belongs to at most one active contact per customer.

Claims are documents keyed by (customer, kind, value), so every check is a point read by key,
on MongoDB and on stores that push down nothing else. There are no multi-document transactions:
a claim is taken before the contact is written and released after, and a claim is trusted only
while its owner really holds the address (or within the grace period right after claiming).

An external id's claim is never deleted: released, it stays owned by no one (``FREE``). CRM sync
relies on it: a sync state is only ever recorded for an external id that has a claim, so a new
contact whose external id claim is taken fresh needs no read of what was applied before.
"""

from collections.abc import Sequence

from service.domain.errors import AddressAlreadyExists
from service.domain.model import Address, Contact
from service.service_layer.context import Services
from service.service_layer.ports import FREE, Claim


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
    await svc.addresses.release(
        customer_id=customer_id,
        address=address,
        contact_id=contact_id,
        keep_free=address.kind == "external",
    )


async def resolve(address: Address, *, customer_id: str, svc: Services) -> Contact | None:
    """The active contact holding ``address``, if any: two point reads by key."""
    claim = await svc.addresses.owner(customer_id=customer_id, address=address)
    if claim is None or claim.contact_id == FREE:
        return None
    owner = await svc.contacts.read(customer_id=customer_id, contact_id=claim.contact_id)
    if owner is None or not owner.holds(address):
        return None
    return owner
