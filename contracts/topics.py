"""Topic names. Versioned so a breaking change can run beside the old shape."""

from typing import Final

COMMANDS: Final = "contacts.commands.v1"
"""Contact commands (create, update, delete, phone numbers, emails, tags, bulk). Key: customer_id."""

QUERIES: Final = "contacts.queries.v1"
"""Read requests answered over request/reply: get and list. Key: customer_id."""

LOOKUPS: Final = "contacts.lookups.v1"
"""Caller-identity lookups by phone or email, answered over request/reply. Key: the phone or email."""

EVENTS: Final = "contacts.events.v1"
"""Contact-changed events (created, updated, deleted). Key: contact id, so one contact stays in order."""

CRM_SYNC: Final = "contacts.crm-sync.v1"
"""Upserts and deletes published by CRM sync connectors. Key: customer_id + external_id."""

SYNC_RESULTS: Final = "contacts.sync-results.v1"
"""Per-item outcome of CRM sync messages that could not be applied. Key: customer_id + external_id."""

DEAD_LETTERS: Final = "contacts.dead-letters.v1"
"""Messages the service could not parse or apply, with the reason in headers (see ``headers``)."""

ALL: Final = (COMMANDS, QUERIES, LOOKUPS, EVENTS, CRM_SYNC, SYNC_RESULTS, DEAD_LETTERS)
