"""Domain errors carry a stable reason code; the service layer maps it onto the wire's ErrorCode."""


class DomainError(Exception):
    code = "INVALID_ARGUMENT"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidArgument(DomainError):
    code = "INVALID_ARGUMENT"


class ContactNotFound(DomainError):
    code = "CONTACT_NOT_FOUND"


class PhoneNumberNotFound(DomainError):
    code = "PHONE_NUMBER_NOT_FOUND"


class EmailNotFound(DomainError):
    code = "EMAIL_NOT_FOUND"


class TagNotFound(DomainError):
    code = "TAG_NOT_FOUND"


class AddressAlreadyExists(DomainError):
    code = "ADDRESS_ALREADY_EXISTS"
