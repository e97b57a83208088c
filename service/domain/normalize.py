"""Phone and email normalization: the keys lookups match on."""

import functools

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from service.domain.errors import InvalidArgument

MAX_EMAIL_LENGTH = 254


def normalize_phone(number: str, *, region: str | None, default_region: str, field: str) -> tuple[str, str]:
    """Return (E.164 without extension, extension) or raise InvalidArgument naming ``field``.

    "Possible" numbers are accepted, not only "valid" ones: number plans change faster than
    libphonenumber's metadata, and the seed's +1555... examples must work.
    """
    outcome = _parse_phone(number, (region or default_region).upper())
    if isinstance(outcome, str):
        raise InvalidArgument(outcome, field=field)
    return outcome


@functools.lru_cache(maxsize=16_384)
def _parse_phone(number: str, hint: str) -> tuple[str, str] | str:
    """(E.164, extension), or why ``number`` is no phone number.

    Cached because the same numbers keep calling, and libphonenumber's parse is a visible share of
    the service's CPU (docs/measurements.md).
    """
    try:
        parsed = phonenumbers.parse(number, hint)
    except phonenumbers.NumberParseException as exc:
        return f"not a phone number: {number!r} ({exc})"
    if not phonenumbers.is_possible_number(parsed):
        return f"not a possible phone number: {number!r}"
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), parsed.extension or ""


def normalize_email(address: str, *, field: str) -> str:
    """The email's key, what it is stored, claimed and matched as, or raise InvalidArgument naming
    ``field``.

    email-validator decides what an address is (syntax only, no DNS) and normalizes it: the domain
    in IDNA (punycode) form, lowercase, so ``user@bücher.de`` and ``user@xn--bcher-kva.de`` are one
    key. Then the whole key is lowercased, as it always was ("stored and matched in lowercase",
    the vendor's rule): every ASCII address keeps exactly the key the earlier rule (the whole
    address stripped and lowercased) gave it, so addresses stored before still match.
    """
    key, why = _parse_email(address.strip())
    if key is None:
        raise InvalidArgument(f"not an email address: {address!r} ({why})", field=field)
    return key


@functools.lru_cache(maxsize=16_384)
def _parse_email(address: str) -> tuple[str | None, str]:
    """(key, "") or (None, why ``address`` is no email address). Cached like ``_parse_phone``:
    lookups by email repeat."""
    try:
        valid = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return None, str(exc)
    key = f"{valid.local_part}@{valid.ascii_domain}".lower()
    if len(key) > MAX_EMAIL_LENGTH:
        return None, f"longer than {MAX_EMAIL_LENGTH} characters"
    return key, ""
