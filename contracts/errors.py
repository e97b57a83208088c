"""Error reason codes and the error body carried by replies, sync results and dead letters."""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class ErrorCode(StrEnum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    MALFORMED_MESSAGE = "MALFORMED_MESSAGE"
    UNKNOWN_MESSAGE_TYPE = "UNKNOWN_MESSAGE_TYPE"
    CONTACT_NOT_FOUND = "CONTACT_NOT_FOUND"
    PHONE_NUMBER_NOT_FOUND = "PHONE_NUMBER_NOT_FOUND"
    EMAIL_NOT_FOUND = "EMAIL_NOT_FOUND"
    TAG_NOT_FOUND = "TAG_NOT_FOUND"
    ADDRESS_ALREADY_EXISTS = "ADDRESS_ALREADY_EXISTS"
    STALE_VERSION = "STALE_VERSION"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    PROCESSING_FAILED = "PROCESSING_FAILED"
    UNAVAILABLE = "UNAVAILABLE"
    """The store or broker did not answer in time; asking again later may succeed."""


class Error(BaseModel):
    """Why a request failed: a stable code, a message for humans, the offending field if any."""

    model_config = ConfigDict(frozen=True)

    code: ErrorCode
    message: str
    field: str | None = None
