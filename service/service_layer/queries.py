"""Query handlers: get, list and lookups. Reads only; every read is scoped to the asking customer."""

import base64
import binascii
import json
from datetime import UTC, datetime

from contracts import queries as q
from contracts.errors import Error, ErrorCode
from contracts.models import Contact as WireContact
from contracts.replies import BatchLookupReply, ContactListReply, ContactReply, LookupMatch
from service.domain.errors import ContactNotFound, DomainError, InvalidArgument
from service.domain.model import Address
from service.domain.normalize import normalize_email, normalize_phone
from service.service_layer import mapping
from service.service_layer.addresses import resolve
from service.service_layer.context import Services
from service.service_layer.directory import CallerDirectory, Unknown, contact_reply

RawReply = bytes
"""A reply already serialized (from the caller directory), sent as it is."""


async def get_contact(query: q.GetContact, *, svc: Services) -> ContactReply:
    contact = await svc.contacts.read(customer_id=query.customer_id, contact_id=query.contact_id)
    if contact is None or contact.is_deleted:
        return _failed(ContactNotFound(f"contact {query.contact_id} not found", field="contact_id"))
    return ContactReply(result=mapping.contact_to_wire(contact))


async def list_contacts(query: q.ListContacts, *, svc: Services) -> ContactListReply:
    try:
        after = decode_page_token(query.page_token) if query.page_token else None
    except InvalidArgument as exc:
        return ContactListReply(ok=False, error=mapping.to_error(exc))
    page = await svc.contacts.list_active(
        customer_id=query.customer_id, limit=query.page_size + 1, after=after
    )
    more = len(page) > query.page_size
    page = page[: query.page_size]
    token = encode_page_token(page[-1].tm_create, page[-1].id) if more else ""
    return ContactListReply(result=[mapping.contact_to_wire(c) for c in page], next_page_token=token)


def encode_page_token(tm_create: datetime, contact_id: str) -> str:
    """Opaque to callers; (tm_create, id) so contacts sharing a timestamp are neither skipped nor repeated."""
    raw = json.dumps([tm_create.isoformat(), contact_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        stamp, contact_id = json.loads(raw)
        after = datetime.fromisoformat(stamp)
        # As issued: a time zone, and an instant every store can name in UTC (a forged year 1 at
        # +05:00 is not: the list read failed on it, again and again, and never answered).
        if after.tzinfo is None:
            raise ValueError("page_token time has no time zone")
        after.astimezone(UTC)
        return after, str(contact_id)
    except (binascii.Error, ValueError, TypeError, OverflowError) as exc:
        raise InvalidArgument("page_token is not one this service issued", field="page_token") from exc


async def lookup_contact(query: q.LookupContact, *, svc: Services) -> ContactReply | RawReply:
    try:
        address = _lookup_address(query, default_region=svc.default_region)
    except DomainError as exc:
        return _failed(exc)
    directory = await _trusted_directory(svc)
    if directory is not None:
        found = directory.find(query.customer_id, address)
        if found is None:
            return _not_found(address)
        if isinstance(found, bytes):
            return contact_reply(found)
    contact = await resolve(address, customer_id=query.customer_id, svc=svc)
    if contact is None:
        return _not_found(address)
    return ContactReply(result=mapping.contact_to_wire(contact))


async def _trusted_directory(svc: Services) -> CallerDirectory | None:
    """The caller directory when it holds every change published before now, else None."""
    if svc.directory is None or not await svc.directory.caught_up():
        return None
    return svc.directory.directory


def _not_found(address: Address) -> ContactReply:
    return _failed(ContactNotFound(f"no contact with {address.kind} {address.value}", field=address.kind))


def _lookup_address(query: q.LookupContact, *, default_region: str) -> Address:
    if query.phone is not None:
        e164, _ = normalize_phone(
            query.phone, region=query.region, default_region=default_region, field="phone"
        )
        return Address("phone", e164)
    assert query.email is not None  # the model guarantees exactly one
    return Address("email", normalize_email(query.email, field="email"))


async def batch_lookup_contacts(query: q.BatchLookupContacts, *, svc: Services) -> BatchLookupReply:
    matches: list[LookupMatch] = []
    wanted: dict[int, Address] = {}
    for i, phone in enumerate(query.phones):
        try:
            e164, _ = normalize_phone(
                phone, region=query.region, default_region=svc.default_region, field=f"phones[{i}]"
            )
        except DomainError as exc:
            matches.append(LookupMatch(phone=phone, error=mapping.to_error(exc)))
            continue
        wanted[i] = Address("phone", e164)
        matches.append(LookupMatch(phone=phone, number_e164=e164))
    holders = await _batch_holders(query.customer_id, set(wanted.values()), svc=svc)
    for i, address in wanted.items():
        owner = holders.get(address)
        if owner is not None:
            matches[i] = matches[i].model_copy(update={"result": owner})
        else:
            not_found = Error(
                code=ErrorCode.CONTACT_NOT_FOUND,
                message=f"no contact with phone {address.value}",
                field=f"phones[{i}]",
            )
            matches[i] = matches[i].model_copy(update={"error": not_found})
    return BatchLookupReply(result=matches)


async def _batch_holders(
    customer_id: str, addresses: set[Address], *, svc: Services
) -> dict[Address, WireContact]:
    """The contact holding each address, from the directory if it can answer for all of them."""
    directory = await _trusted_directory(svc)
    if directory is not None:
        found = {address: directory.find(customer_id, address) for address in addresses}
        if not any(isinstance(v, Unknown) for v in found.values()):
            return {a: WireContact.model_validate_json(v) for a, v in found.items() if isinstance(v, bytes)}
    claims = await svc.addresses.owners(customer_id=customer_id, addresses=list(addresses))
    owners = await svc.contacts.read_many(
        customer_id=customer_id, contact_ids=sorted({claim.contact_id for claim in claims.values()})
    )
    holders: dict[Address, WireContact] = {}
    for address, claim in claims.items():
        owner = owners.get(claim.contact_id)
        if owner is not None and owner.holds(address):
            holders[address] = mapping.contact_to_wire(owner)
    return holders


def _failed(exc: DomainError) -> ContactReply:
    return ContactReply(ok=False, error=mapping.to_error(exc))
