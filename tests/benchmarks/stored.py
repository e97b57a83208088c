"""Contacts written straight into the store as the service writes them, for the benchmarks' loads."""

from typing import Any

from contracts import commands as c
from contracts.models import ContactInput
from service.adapters.mongo import (
    ADDRESSES,
    CONTACT_LIST,
    CONTACTS,
    MongoAddressBook,
    contact_to_doc,
    list_key,
)
from service.service_layer.commands import build_contact, created_outcome
from service.service_layer.context import Services

Doc = dict[str, Any]


def created_docs(
    svc: Services, *, customer_id: str, command_id: str, contact_id: str, contact: dict[str, Any]
) -> dict[str, list[Doc]]:
    """The documents ``create_contact`` writes for ``contact`` (a ContactInput as JSON): the
    contact with its outcome, its address claims and its listing entry, by collection."""
    command = c.CreateContact(
        command_id=command_id, customer_id=customer_id, contact=ContactInput.model_validate(contact)
    )
    built, wanted = build_contact(
        command.contact,
        contact_id=contact_id,
        customer_id=customer_id,
        seed=(customer_id, command_id),
        svc=svc,
    )
    return {
        CONTACTS: [contact_to_doc(built, created_outcome(command, built))],
        ADDRESSES: [MongoAddressBook.claim_doc(customer_id, a, built.id, built.tm_create) for a, _ in wanted],
        CONTACT_LIST: [{"_id": list_key(built), "contact_id": built.id}],
    }


def merged(parts: list[dict[str, list[Doc]]]) -> dict[str, list[Doc]]:
    out: dict[str, list[Doc]] = {CONTACTS: [], ADDRESSES: [], CONTACT_LIST: []}
    for part in parts:
        for name, docs in part.items():
            out[name] += docs
    return out
