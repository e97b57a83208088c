"""Every call of the seed tutorial (shared/seeds/001), with its example payloads, over the real
broker and store: the service runs in-process, the test speaks to it only through Kafka."""

from typing import Any

import pytest

from contracts import commands as c
from contracts.client import ContactClient
from contracts.replies import ContactReply
from tests.factories import CommandT, ok, present, send

pytestmark = pytest.mark.integration

CUSTOMER = "5e4a0680-804e-11ec-8477-2fea5968d85b"

TUTORIAL_CREATE: dict[str, Any] = {
    "first_name": "John",
    "last_name": "Smith",
    "display_name": "John Smith",
    "company": "Acme Corp",
    "job_title": "Account Manager",
    "source": "manual",
    "notes": "Key enterprise customer contact",
    "phone_numbers": [
        {"number": "+15551234567", "type": "mobile", "is_primary": True},
        {"number": "+15559876543", "type": "work", "is_primary": False},
    ],
    "emails": [{"address": "john@acme.com", "type": "work", "is_primary": True}],
    "tag_ids": ["uuid-for-enterprise-tag", "uuid-for-vip-tag"],
}


async def test_the_seed_tutorial_end_to_end(running_service: object, client: ContactClient) -> None:
    async def call(kind: type[CommandT], /, **fields: Any) -> ContactReply:
        """The tutorial's call: a ``kind`` command for CUSTOMER."""
        return await send(client, kind, customer_id=CUSTOMER, **fields)

    # Create a contact
    created = await call(c.CreateContact, contact=TUTORIAL_CREATE)
    assert created.ok, created.error
    contact = created.result
    assert contact is not None
    assert (
        contact.customer_id == CUSTOMER
        and contact.display_name == "John Smith"
        and contact.source == "manual"
    )
    assert [(p.number, p.number_e164, p.type, p.is_primary) for p in contact.phone_numbers] == [
        ("+15551234567", "+15551234567", "mobile", True),
        ("+15559876543", "+15559876543", "work", False),
    ]
    assert [(e.address, e.type, e.is_primary) for e in contact.emails] == [("john@acme.com", "work", True)]
    assert contact.tag_ids == ["uuid-for-enterprise-tag", "uuid-for-vip-tag"]
    assert contact.external_id == "" and contact.tm_update is None and contact.tm_delete is None
    wire = created.model_dump(mode="json")["result"]
    assert wire["tm_create"].endswith("Z") and wire["tm_update"] is None
    contact_id = contact.id

    async def change(kind: type[CommandT], /, **fields: Any) -> ContactReply:
        """A ``kind`` command on the tutorial's contact."""
        return await call(kind, contact_id=contact_id, **fields)

    # Get a list of contacts
    listed = await client.list_contacts(CUSTOMER, page_size=10)
    assert listed.ok and [r.id for r in listed.result] == [contact_id] and listed.next_page_token == ""

    # Get a specific contact
    got = await client.get(CUSTOMER, contact_id)
    assert got.ok and got.result == contact

    # Update a contact: only the given fields change
    updated = await change(
        c.UpdateContact,
        changes={
            "first_name": "John",
            "last_name": "Smith",
            "display_name": "John Smith (VIP)",
            "company": "Acme Corporation",
            "job_title": "Senior Account Manager",
            "notes": "Promoted to senior role in January",
        },
    )
    assert updated.ok and updated.result is not None
    assert updated.result.display_name == "John Smith (VIP)" and updated.result.company == "Acme Corporation"
    assert updated.result.phone_numbers == contact.phone_numbers and updated.result.tm_update is not None

    # Lookup by phone number (several formats) and by email (any case)
    for phone in ["+15551234567", "(555) 123-4567", "1-555-123-4567"]:
        found = await client.lookup_phone(CUSTOMER, phone)
        assert found.ok and found.result is not None and found.result.id == contact_id, phone
    found = await client.lookup_email(CUSTOMER, "JOHN@Acme.com")
    assert found.ok and found.result is not None and found.result.id == contact_id

    # Add a phone number
    added = ok(
        await change(
            c.AddPhoneNumber, phone_number={"number": "+15553334444", "type": "home", "is_primary": False}
        )
    )
    home = next(p for p in added.phone_numbers if p.number_e164 == "+15553334444")
    assert home.type == "home" and not home.is_primary

    # Update a phone number: becoming primary demotes the old primary
    home_primary = {"number": "+15553334444", "type": "mobile", "is_primary": True}
    changed = ok(await change(c.UpdatePhoneNumber, phone_number_id=home.id, changes=home_primary))
    assert [(p.number_e164, p.is_primary) for p in changed.phone_numbers] == [
        ("+15551234567", False),
        ("+15559876543", False),
        ("+15553334444", True),
    ]

    # Remove a phone number: it no longer identifies the caller
    removed = ok(await change(c.RemovePhoneNumber, phone_number_id=home.id))
    assert len(removed.phone_numbers) == 2
    gone = await client.lookup_phone(CUSTOMER, "+15553334444")
    assert not gone.ok and gone.error is not None and gone.error.code == "CONTACT_NOT_FOUND"

    # Add an email address
    added_email = ok(
        await change(
            c.AddEmail, email={"address": "john.smith@gmail.com", "type": "personal", "is_primary": False}
        )
    )
    personal = next(e for e in added_email.emails if e.address == "john.smith@gmail.com")

    # Update an email address: becoming primary demotes the old primary
    personal_primary = {"address": "john.smith@gmail.com", "type": "personal", "is_primary": True}
    made_primary = ok(await change(c.UpdateEmail, email_id=personal.id, changes=personal_primary))
    assert [(e.address, e.is_primary) for e in made_primary.emails] == [
        ("john@acme.com", False),
        ("john.smith@gmail.com", True),
    ]

    # Remove an email address
    removed_email = ok(await change(c.RemoveEmail, email_id=personal.id))
    assert [e.address for e in removed_email.emails] == ["john@acme.com"]

    # Add a tag, then remove one
    tagged = ok(await change(c.AddTag, tag_id="uuid-for-partner-tag"))
    assert "uuid-for-partner-tag" in tagged.tag_ids
    untagged = ok(await change(c.RemoveTag, tag_id="uuid-for-enterprise-tag"))
    assert untagged.tag_ids == ["uuid-for-vip-tag", "uuid-for-partner-tag"]

    # Delete a contact: soft delete; it vanishes from get, list and lookup; its numbers are free again
    deleted = ok(await change(c.DeleteContact))
    assert deleted.tm_delete is not None
    assert present((await client.get(CUSTOMER, contact_id)).error).code == "CONTACT_NOT_FOUND"
    assert (await client.list_contacts(CUSTOMER)).result == []
    assert not (await client.lookup_phone(CUSTOMER, "+15551234567")).ok
    assert not (await client.lookup_email(CUSTOMER, "john@acme.com")).ok
    again = ok(await call(c.CreateContact, contact=TUTORIAL_CREATE))
    assert again.id != contact_id
    twice = await change(c.DeleteContact)
    assert twice.ok
