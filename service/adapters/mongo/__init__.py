"""MongoDB adapters (PyMongo's async API) for the contact store, address claims and command log.

Every hot read is an exact ``_id`` match: the only filter every MongoDB-wire store answers from an
index (FerretDB's SQLite backend pushes down nothing else). Claims and log entries therefore carry
composite string keys; other indexes serve MongoDB where lists and CRM lookups need them.
"""

from service.adapters.mongo.addresses import MongoAddressBook
from service.adapters.mongo.command_log import MongoCommandLog
from service.adapters.mongo.contacts import MongoContactRepository, every_contact, list_key
from service.adapters.mongo.documents import (
    ADDRESSES,
    COMMAND_LOG,
    CONTACT_LIST,
    CONTACTS,
    SCHEMA_MARKS,
    SYNC_STATE,
    Doc,
    contact_from_doc,
    contact_to_doc,
)
from service.adapters.mongo.schema import INDEXES, ensure_schema, make_client, mark_listed
from service.adapters.mongo.sync_states import MongoSyncStates

__all__ = [
    "ADDRESSES",
    "COMMAND_LOG",
    "CONTACTS",
    "CONTACT_LIST",
    "INDEXES",
    "SCHEMA_MARKS",
    "SYNC_STATE",
    "Doc",
    "MongoAddressBook",
    "MongoCommandLog",
    "MongoContactRepository",
    "MongoSyncStates",
    "contact_from_doc",
    "contact_to_doc",
    "ensure_schema",
    "every_contact",
    "list_key",
    "make_client",
    "mark_listed",
]
