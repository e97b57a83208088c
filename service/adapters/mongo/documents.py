"""What every collection's adapter shares: the collections' names, the documents and their keys."""

import json
from collections.abc import Callable
from typing import Any

from pymongo.errors import BulkWriteError

from service.domain.model import Contact
from service.service_layer.mapping import contact_from_json, contact_json
from service.service_layer.ports import Outcome, StoredContact

Doc = dict[str, Any]

CONTACTS = "contacts"
ADDRESSES = "contact_addresses"
COMMAND_LOG = "processed_commands"
SYNC_STATE = "crm_sync_state"
CONTACT_LIST = "contact_list"
SCHEMA_MARKS = "schema_marks"


def key(*parts: str) -> str:
    """An unambiguous composite key (JSON array), whatever characters the parts hold."""
    return json.dumps(parts, separators=(",", ":"), ensure_ascii=False)


def duplicates(exc: BulkWriteError, ids: list[Any]) -> set[Any]:
    """The ids a bulk insert found existing; anything but duplicate keys is re-raised."""
    errors = exc.details.get("writeErrors", [])
    if any(e.get("code") != 11000 for e in errors) or exc.details.get("writeConcernErrors"):
        raise exc
    return {ids[e["index"]] for e in errors}


def contact_to_doc(contact: Contact, outcome: Outcome | None) -> Doc:
    """The contact's wire form under ``_id``, with its version and the outcome that made it."""
    own = contact_json(contact)
    doc: Doc = {"_id": contact.id}
    doc.update((k, v) for k, v in own.items() if k != "id")
    doc["version"] = contact.version
    doc["last_outcome"] = None if outcome is None else _OwnRefs(own).compact(outcome_to_doc(outcome))
    return doc


def contact_from_doc(doc: Doc) -> Contact:
    return contact_from_json({**doc, "id": doc["_id"]}, version=doc.get("version", 1))


def stored_contact(doc: Doc) -> StoredContact:
    contact = contact_from_doc(doc)
    last = doc.get("last_outcome")
    outcome = None if not last else outcome_from_doc(_OwnRefs(contact_json(contact)).inflate(last))
    return StoredContact(contact=contact, last_outcome=outcome)


def outcome_to_doc(outcome: Outcome) -> Doc:
    return {
        "customer_id": outcome.customer_id,
        "command_id": outcome.command_id,
        "command_type": outcome.command_type,
        "reply": outcome.reply,
        "events": outcome.events,
    }


def outcome_from_doc(doc: Doc) -> Outcome:
    return Outcome(
        customer_id=doc["customer_id"],
        command_id=doc["command_id"],
        command_type=doc["command_type"],
        reply=doc["reply"],
        events=list(doc.get("events", [])),
    )


class _Refs:
    """Contacts a document holds anyway, by the marker that stands for each.

    An outcome names whole contacts in its reply and in each event; stored verbatim, a contact
    would be held several times over and every read would pay for it. A copy equal to a contact
    the document already holds is stored as that contact's marker, and put back on read; a copy
    of any other state stays verbatim.
    """

    reply_sites: frozenset[str] = frozenset()  # the reply's keys whose value may be a marker

    def __init__(self, held: dict[str, Doc]) -> None:
        self._held = held
        self._by_id = {c["id"]: marker for marker, c in held.items()}

    def _ref(self, value: Any) -> Any:
        key = value.get("id") if isinstance(value, dict) else None
        marker = self._by_id.get(key) if isinstance(key, str) else None
        return marker if marker is not None and self._held[marker] == value else value

    def _deref(self, value: Any) -> Any:
        return self._held.get(value, value) if isinstance(value, str) else value

    def compact(self, outcome: Doc) -> Doc:
        return self._map(outcome, self._ref)

    def inflate(self, outcome: Doc) -> Doc:
        return self._map(outcome, self._deref)

    def _map(self, outcome: Doc, swap: Callable[[Any], Any]) -> Doc:
        reply = {k: swap(v) if k in self.reply_sites else v for k, v in outcome["reply"].items()}
        events = [
            {**e, "contact": swap(e["contact"])} if "contact" in e else e for e in outcome.get("events", [])
        ]
        return {**outcome, "reply": reply, "events": events}


class _OwnRefs(_Refs):
    """In a contact's document: its own state, which the outcome's reply names too (a command's
    ``result``, a bulk or sync item's ``contact``)."""

    reply_sites = frozenset({"result", "contact"})

    def __init__(self, own: Doc) -> None:
        super().__init__({"=contact": own})


class _ReplyRefs(_Refs):
    """In a command log entry: the contacts of the reply itself, which the events name again."""

    def __init__(self, reply: Doc) -> None:
        found = [reply.get("result"), *(reply.get("contacts") or [])]
        named = [c for c in found if isinstance(c, dict) and isinstance(c.get("id"), str)]
        super().__init__({f"=reply:{c['id']}": c for c in named})


def log_doc(outcome: Outcome) -> Doc:
    """A command log entry's document: the outcome, its events' contacts named in the reply."""
    return _ReplyRefs(outcome.reply).compact(outcome_to_doc(outcome))


def logged_outcome(doc: Doc) -> Outcome:
    return outcome_from_doc(_ReplyRefs(doc["reply"]).inflate(doc))
