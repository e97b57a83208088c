"""Error reason codes and the error body carried by replies, sync results and dead letters."""

from collections.abc import Iterable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class ErrorCode(StrEnum):
    """Every code here is produced by some code path (``tests/unit/test_error_codes.py`` pins it).

    There is no code for a request past its ``deadline`` header: such a request is not answered
    at all (its caller has given up waiting), so no reply could carry one. There is none for a
    stale version either: no command carries an expected version; concurrent writers are ordered
    by the service's own compare-and-set, never refused.
    """

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    MALFORMED_MESSAGE = "MALFORMED_MESSAGE"
    UNKNOWN_MESSAGE_TYPE = "UNKNOWN_MESSAGE_TYPE"
    CONTACT_NOT_FOUND = "CONTACT_NOT_FOUND"
    PHONE_NUMBER_NOT_FOUND = "PHONE_NUMBER_NOT_FOUND"
    EMAIL_NOT_FOUND = "EMAIL_NOT_FOUND"
    TAG_NOT_FOUND = "TAG_NOT_FOUND"
    ADDRESS_ALREADY_EXISTS = "ADDRESS_ALREADY_EXISTS"
    PROCESSING_FAILED = "PROCESSING_FAILED"
    UNAVAILABLE = "UNAVAILABLE"
    """The store or broker did not answer in time; asking again later may succeed."""


def field_path(loc: Iterable[int | str]) -> str:
    """The one form of every error's ``field``: names joined by dots, list positions in brackets.

    ``["contact", "emails", 0, "address"]`` → ``contact.emails[0].address``;
    ``["contacts", 3, "phone_numbers", 0, "type"]`` → ``contacts[3].phone_numbers[0].type``.
    """
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


class Error(BaseModel):
    """Why a request failed: a stable code, a message for humans, the offending field if any.

    ``field`` names the offending input as ``contact.emails[0].address`` (see ``field_path``)."""

    model_config = ConfigDict(frozen=True)

    code: ErrorCode
    message: str
    field: str | None = None
