"""Replies to requests that asked for one. ``ok`` is false exactly when ``error`` is set.

An error reply to a message the service could not even parse is ``{"ok": false, "error": ...}``,
which every reply model below accepts.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict

from contracts.errors import Error
from contracts.models import Contact


class _Reply(BaseModel):
    model_config = ConfigDict(frozen=True)

    ok: bool = True
    error: Error | None = None


class ErrorReply(_Reply):
    ok: bool = False


class ContactReply(_Reply):
    """Create, get, update, delete, phone/email/tag changes and single lookups."""

    result: Contact | None = None


class ContactListReply(_Reply):
    """The seed's list shape: ``result`` and ``next_page_token`` (empty on the last page)."""

    result: list[Contact] = []
    next_page_token: str = ""


class LookupMatch(BaseModel):
    model_config = ConfigDict(frozen=True)

    phone: str
    """As asked."""
    number_e164: str | None = None
    result: Contact | None = None
    error: Error | None = None


class BatchLookupReply(_Reply):
    result: list[LookupMatch] = []


class BulkItemResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int
    status: Literal["created", "updated", "failed"]
    contact: Contact | None = None
    error: Error | None = None


class BulkItemStatus(BaseModel):
    """One line per input item: what happened to it (the contact itself is in ``contacts``)."""

    model_config = ConfigDict(frozen=True)

    index: int
    status: Literal["created", "updated", "failed"]
    contact_id: str | None = None


class BulkCreateReply(_Reply):
    """Seed 004's bulk shape (created, updated, failed, contacts, errors with index and reason),
    plus ``items``: one status line per input item, in input order."""

    created: int = 0
    updated: int = 0
    failed: int = 0
    contacts: list[Contact] = []
    errors: list[BulkItemResult] = []
    items: list[BulkItemStatus] = []


class BulkDeleteReply(_Reply):
    deleted: int = 0
    not_found: list[str] = []
