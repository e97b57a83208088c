"""Planning bulk items and sync messages: what each one does, before anything is written.

Validating items, building the new contacts, reading which contact holds each external id, what
an item may claim or give up (its footprint), and per item: create, update, change nothing, fail,
or delete.
"""

from collections import Counter
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

from contracts import commands as c
from contracts.errors import Error, ErrorCode, field_path
from contracts.models import ContactInput
from service.domain.errors import AddressAlreadyExists, DomainError
from service.domain.model import Address, Contact
from service.service_layer import mapping
from service.service_layer.addresses import Footprint, wanted_by
from service.service_layer.commands import Origin, build_contact, change_event
from service.service_layer.context import Services
from service.service_layer.items import ItemOrigin, ItemResult, ManyOutcome, NewItem, failed_item
from service.service_layer.ports import FREE, JsonDict, Outcome, StoredContact

Wanted = list[tuple[Address, str]]
"""(address, field) pairs to claim, the fields named for error replies."""


def validation_error(exc: ValidationError, *, prefix: str) -> Error:
    """An item's first schema violation, its field named within the item in the one form of every
    error's field (``contacts[3].phone_numbers[0].type``, as for single commands)."""
    first = exc.errors()[0]
    loc = field_path(first["loc"])
    return Error(
        code=ErrorCode.INVALID_ARGUMENT,
        message=first["msg"],
        field=f"{prefix}.{loc}" if loc else prefix,
    )


def validated_items(command: c.BulkCreateContacts) -> tuple[list[NewItem], dict[int, ItemResult]]:
    """The bulk's valid items, each applied as a command ``<command_id>#<index>``; the invalid
    ones' failures, by index."""
    items: list[NewItem] = []
    failures: dict[int, ItemResult] = {}
    for index, raw in enumerate(command.contacts):
        prefix = f"contacts[{index}]"
        try:
            contact_input = ContactInput.model_validate(raw)
        except ValidationError as exc:
            failures[index] = ItemResult(index, "failed", error=validation_error(exc, prefix=prefix))
            continue
        origin = ItemOrigin(f"{command.command_id}#{index}", command.type)
        items.append(NewItem(index, origin, contact_input, prefix))
    return items, failures


def split_repeats(items: list[NewItem]) -> tuple[list[NewItem], list[NewItem]]:
    """The items without an external id or with its first mention; the items repeating one."""
    firsts: list[NewItem] = []
    repeats: list[NewItem] = []
    seen: set[str] = set()
    for item in items:
        external = item.contact_input.external_id
        (repeats if external and external in seen else firsts).append(item)
        if external:
            seen.add(external)
    return firsts, repeats


def _named(wanted: Wanted, prefix: str) -> Wanted:
    """The fields named within the item (``contacts[3].`` instead of ``contact.``)."""
    return [(a, f.replace("contact.", f"{prefix}.", 1)) for a, f in wanted]


@dataclass
class Built:
    item: NewItem
    contact: Contact
    wanted: Wanted


def reserved_by(items: list[NewItem], *, svc: Services) -> list[tuple[int, set[Address]]]:
    """The phone numbers and emails each of ``items`` (valid ones) wants, by position, in order:
    items applied after the new ones (repeating an external id) still come first for what they
    want before a later new item wants it."""
    reserved: list[tuple[int, set[Address]]] = []
    for item in sorted(items, key=lambda i: i.position):
        try:
            wanted = wanted_by(item.contact_input, default_region=svc.default_region)
        except DomainError:
            continue  # it fails without claiming anything
        reserved.append((item.position, {a for a in wanted if a.kind != "external"}))
    return reserved


def build_new(
    customer_id: str,
    items: list[NewItem],
    *,
    out: ManyOutcome,
    seen: set[Address],
    svc: Services,
    reserved: list[tuple[int, set[Address]]] | None = None,
) -> list[Built]:
    """The items as new contacts; an item wanting an address in ``seen`` (or invalid) fails.

    ``reserved``: what items applied later but placed earlier want (``reserved_by``); each is added
    to ``seen`` (and taken off the list) once an item after its position is built.
    """
    built: list[Built] = []
    for item in items:
        while reserved and reserved[0][0] < item.position:
            seen.update(reserved.pop(0)[1])
        contact_id = mapping.derived_id("contact", customer_id, item.origin.command_id)
        try:
            contact, wanted = build_contact(
                item.contact_input,
                contact_id=contact_id,
                customer_id=customer_id,
                seed=(customer_id, item.origin.command_id),
                svc=svc,
            )
            wanted = _named(wanted, item.prefix)
            twice = next((f for a, f in wanted if a in seen), None)
            if twice is not None:
                raise AddressAlreadyExists("already claimed by an earlier item", field=twice)
        except DomainError as exc:
            out.results[item.position] = failed_item(item, exc)
            continue
        seen.update(a for a, _ in wanted)
        built.append(Built(item, contact, wanted))
    return built


Holder = tuple[StoredContact | None]
"""The contact holding an item's external id as read before (None: none holds it)."""


async def holders(customer_id: str, items: list[NewItem], *, svc: Services) -> dict[int, Holder]:
    """For each item with an external id, the contact that held it when read (point reads, together).

    Not for an external id that several items share: the first of them may create its holder.
    """
    shared = Counter(i.contact_input.external_id for i in items)
    externals = {
        i.position: Address("external", i.contact_input.external_id)
        for i in items
        if i.contact_input.external_id and shared[i.contact_input.external_id] == 1
    }
    known = {externals[i.position]: i.claim for i in items if i.claim is not None and i.position in externals}
    unknown = [a for a in externals.values() if a not in known]
    claims = known | await svc.addresses.owners(customer_id=customer_id, addresses=unknown)
    owners = {c.contact_id for c in claims.values() if c.contact_id != FREE}
    stored = await svc.contacts.get_many(customer_id=customer_id, contact_ids=sorted(owners))
    held: dict[int, Holder] = {}
    for position, address in externals.items():
        claim = claims.get(address)
        held[position] = (stored.get(claim.contact_id) if claim is not None else None,)
    return held


def item_footprint(item: NewItem, holder: Holder | None, *, svc: Services) -> Footprint:
    """What upserting ``item`` may claim or give up, given the contact holding its external id."""
    try:
        wanted = wanted_by(item.contact_input, default_region=svc.default_region)
    except DomainError:
        return Footprint(frozenset(), releases=False)  # it fails without touching anything
    external = Address("external", item.contact_input.external_id)
    wanted.add(external)
    if holder is None:  # not read: it may update any contact
        return Footprint(frozenset(wanted), releases=True)
    owner = holder[0]
    held = owner.contact.addresses() if owner is not None and owner.contact.holds(external) else set()
    return Footprint(frozenset(wanted - held), releases=bool(held - wanted))


async def holding_contact(
    customer_id: str, external_id: str, holder: Holder | None, *, svc: Services
) -> StoredContact | None:
    """The active contact holding ``external_id``, if any (read unless ``holder`` says)."""
    if not external_id:
        return None
    if holder is None:
        claim = await svc.addresses.owner(customer_id=customer_id, address=Address("external", external_id))
        if claim is None or claim.contact_id == FREE:
            return None
        holder = (await svc.contacts.get(customer_id=customer_id, contact_id=claim.contact_id),)
    (owner,) = holder
    return owner if owner is not None and owner.contact.holds(Address("external", external_id)) else None


@dataclass
class Change:
    """An item's contact, created or changed in memory, and what writing it involves."""

    contact: Contact
    status: Literal["created", "updated"]
    wanted: Wanted
    """The addresses to claim first."""
    changed: list[str]
    """The fields an update changed (none: nothing to write)."""
    before_version: int
    before: set[Address]
    """The addresses the contact held before: those it no longer holds are released after."""


def plan_upsert(item: NewItem, stored: StoredContact | None, *, customer_id: str, svc: Services) -> Change:
    """A new contact unless ``stored`` is active, else ``stored`` made to look like the item.

    Raises DomainError for an invalid item.
    """
    command_id = item.origin.command_id
    if stored is None or stored.contact.is_deleted:
        new_id = mapping.derived_id("contact", customer_id, command_id)
        contact, wanted = build_contact(
            item.contact_input,
            contact_id=new_id,
            customer_id=customer_id,
            seed=(customer_id, command_id),
            svc=svc,
        )
        return Change(contact, "created", _named(wanted, item.prefix), [], before_version=0, before=set())
    contact, contact_input = stored.contact, item.contact_input
    before_version, before = contact.version, contact.addresses()
    _, wanted = build_contact(contact_input, contact_id=contact.id, customer_id=customer_id, seed=(), svc=svc)
    changed = contact.replace_state(
        fields=mapping.scalar_fields(contact_input),
        phone_numbers=[
            mapping.new_phone(p, default_region=svc.default_region, field="")
            for p in contact_input.phone_numbers
        ],
        emails=[mapping.new_email(e, field="") for e in contact_input.emails],
        tag_ids=contact_input.tag_ids,
        now=svc.clock.now(),
        new_id=mapping.DerivedIds(customer_id, command_id),
    )
    to_claim = [(a, f) for a, f in _named(wanted, item.prefix) if a not in before]
    return Change(contact, "updated", to_claim, changed, before_version, before)


@dataclass(frozen=True, slots=True)
class Deletion:
    """A contact marked deleted in memory, to write if it is still at ``expected_version``."""

    contact: Contact
    expected_version: int
    outcome: Outcome
    released: set[Address]
    """The addresses it held: released once it is written."""


def plan_delete(
    found: StoredContact | None, *, origin: Origin, customer_id: str, item_command_id: str, svc: Services
) -> Deletion | list[JsonDict] | None:
    """Soft-deleting ``found`` as the item ``item_command_id``: a Deletion to write; the events
    stored when this item deleted it before; or None when there is no active contact to delete."""
    if found is None:
        return None
    if (applied := found.outcome_of(item_command_id)) is not None:
        return applied.events
    contact = found.contact
    if contact.is_deleted:
        return None
    version, held = contact.version, contact.addresses()
    contact.delete(svc.clock.now())
    contact.touch(svc.clock.now())
    events = [change_event(origin, contact, ["tm_delete"])]
    return Deletion(contact, version, Outcome(customer_id, item_command_id, origin.type, {}, events), held)
