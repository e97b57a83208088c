"""Phone and email normalization: the keys lookups match on."""

import functools
import re

import phonenumbers

from service.domain.errors import InvalidArgument

# Deliberately permissive (RFC 5322 is larger than any regex); rejects what cannot be an address.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


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
    """Lowercase the whole address (stored and matched that way) or raise InvalidArgument."""
    cleaned = address.strip().lower()
    if len(cleaned) > 254 or not _EMAIL.match(cleaned):
        raise InvalidArgument(f"not an email address: {address!r}", field=field)
    return cleaned
