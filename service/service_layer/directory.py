"""The caller directory: every contact's wire form in memory, by phone number and email.

Call routing asks "who is calling?" while the caller waits; two store reads per question made the
store, not the service, the limit. The directory is a read model kept by the service itself: it is
loaded from the store at start-up and then follows the contact-changed events, which carry the
whole contact and its version. A lookup is answered from it only once it holds every event
published before the lookup arrived (see ``Directory.caught_up``), so it never answers with a
contact as it was before a change whose command has been answered. When it cannot tell (not
loaded yet, too far behind, or an address held by two contacts while a number moves between them)
the lookup is answered from the store, as before.

Pure data: no I/O here. The events a directory follows and the barrier are the adapters' job.
"""

import json
import sys
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from service.domain.model import Address
from service.service_layer.ports import JsonDict


class Unknown(Enum):
    """The directory cannot answer for this address: ask the store."""

    UNKNOWN = "unknown"


UNKNOWN = Unknown.UNKNOWN


def contact_bytes(contact: JsonDict) -> bytes:
    """A contact's wire form as compact JSON, as pydantic dumps ``contracts.models.Contact``."""
    return json.dumps(contact, separators=(",", ":"), ensure_ascii=False).encode()


def contact_reply(contact: bytes) -> bytes:
    """``ContactReply(result=contact).model_dump_json()``, from the contact's JSON bytes."""
    return b'{"ok":true,"error":null,"result":' + contact + b"}"


@dataclass(slots=True)
class _Card:
    version: int
    contact: bytes | None
    """None once deleted: the version stays, so an older event cannot bring the contact back."""
    keys: tuple[str, ...]


def _key(customer_id: str, address: Address) -> str:
    # One string rather than a tuple: less memory per address.
    return f"{customer_id}\x1f{address.kind}\x1f{address.value}"


def _keys(contact: JsonDict) -> tuple[str, ...]:
    """The lookup keys a contact answers to: its phones (E.164) and emails (stored normalized)."""
    if contact.get("tm_delete"):
        return ()
    customer = contact["customer_id"]
    return tuple(
        [_key(customer, Address("phone", p["number_e164"])) for p in contact.get("phone_numbers", ())]
        + [_key(customer, Address("email", e["address"])) for e in contact.get("emails", ())]
    )


class CallerDirectory:
    """Contacts by (customer, address); each contact's newest version wins, in any arrival order."""

    def __init__(self) -> None:
        self._cards: dict[str, _Card] = {}
        self._holders: dict[str, str | set[str]] = {}
        self.active = 0

    def __len__(self) -> int:
        return len(self._cards)

    def clear(self) -> None:
        self._cards.clear()
        self._holders.clear()
        self.active = 0

    def apply(self, contact: JsonDict, *, version: int) -> bool:
        """Take ``contact`` (its wire form) at ``version`` unless a newer or equal one is held."""
        contact_id = contact["id"]
        card = self._cards.get(contact_id)
        if card is not None and card.version >= version:
            return False
        keys = _keys(contact)
        if card is not None:
            self._unindex(contact_id, card.keys)
            self.active -= card.contact is not None
        body = None if contact.get("tm_delete") else contact_bytes(contact)
        self._cards[sys.intern(contact_id)] = _Card(version, body, keys)
        self.active += body is not None
        for key in keys:
            held = self._holders.get(key)
            if held is None:
                self._holders[key] = contact_id
            elif isinstance(held, str):
                if held != contact_id:
                    self._holders[key] = {held, contact_id}
            else:
                held.add(contact_id)
        return True

    def _unindex(self, contact_id: str, keys: tuple[str, ...]) -> None:
        for key in keys:
            held = self._holders.get(key)
            if held == contact_id:
                del self._holders[key]
            elif isinstance(held, set):
                held.discard(contact_id)
                if len(held) == 1:
                    self._holders[key] = held.pop()

    def find(self, customer_id: str, address: Address) -> bytes | Unknown | None:
        """The JSON of the one active contact of ``customer_id`` holding ``address``; None when no
        contact holds it; UNKNOWN when two do (a move between them is half-way through)."""
        held = self._holders.get(_key(customer_id, address))
        if held is None:
            return None
        if isinstance(held, str):
            return self._cards[held].contact
        return UNKNOWN


class Directory(Protocol):
    """The port lookups use: a directory, and whether it may be trusted right now."""

    directory: CallerDirectory

    async def caught_up(self) -> bool:
        """True once the directory holds every change published before this call; False when it
        cannot within its time limit (not loaded, behind, or the broker does not answer)."""
        ...
