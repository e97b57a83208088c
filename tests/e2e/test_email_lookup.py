"""Email addresses over the real broker and store: an internationalized domain in Unicode or in
punycode (any case) is one address, held by one contact and found in either form; what
email-validator refuses is refused with INVALID_ARGUMENT naming the field."""

import pytest

from contracts.client import ContactClient
from contracts.replies import ContactReply
from service.bootstrap import Application
from tests.factories import create_contact, ok, present

pytestmark = pytest.mark.integration

ACME = "cust-acme-emails"


async def test_lookup_by_email_finds_the_contact_in_unicode_and_in_punycode(
    running_service: Application, client: ContactClient
) -> None:
    contact = ok(
        await client.command(
            create_contact(
                ACME,
                first_name="Jürgen",
                emails=[{"address": "Jürgen.Meier@Bücher.de", "type": "work", "is_primary": True}],
            )
        )
    )
    assert [e.address for e in contact.emails] == ["jürgen.meier@xn--bcher-kva.de"]

    for asked in [
        "jürgen.meier@bücher.de",
        "Jürgen.Meier@BÜCHER.DE",
        "jürgen.meier@xn--bcher-kva.de",
        "JÜRGEN.MEIER@XN--BCHER-KVA.DE",
    ]:
        found = await client.lookup_email(ACME, asked)
        assert present(found.result).id == contact.id, (asked, found.error)

    # The same address in the other form belongs to the contact already.
    clash = await client.command(
        create_contact(ACME, first_name="Other", emails=[{"address": "jürgen.meier@xn--bcher-kva.de"}])
    )
    assert clash.error is not None
    assert (clash.error.code, clash.error.field) == ("ADDRESS_ALREADY_EXISTS", "contact.emails[0].address")

    # An ASCII address keeps matching in any case, as before.
    plain = ok(
        await client.command(create_contact(ACME, first_name="Ada", emails=[{"address": "Ada@Example.COM"}]))
    )
    assert plain.emails[0].address == "ada@example.com"
    assert present((await client.lookup_email(ACME, "ADA@example.com")).result).id == plain.id


@pytest.mark.parametrize("address", ["john..doe@example.com", "user@exa_mple.com"])
async def test_what_email_validator_refuses_is_refused_naming_the_field(
    running_service: Application, client: ContactClient, address: str
) -> None:
    refused: ContactReply = await client.command(create_contact(ACME, emails=[{"address": address}]))
    assert refused.error is not None
    assert (refused.error.code, refused.error.field) == ("INVALID_ARGUMENT", "contact.emails[0].address")
    looked_up = await client.lookup_email(ACME, address)
    assert looked_up.error is not None
    assert (looked_up.error.code, looked_up.error.field) == ("INVALID_ARGUMENT", "email")
