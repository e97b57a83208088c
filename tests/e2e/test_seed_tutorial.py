"""Every call of the seed tutorial (shared/seeds/001), with its example payloads, over the real
broker and store: the service runs in-process, the test speaks to it only through Kafka."""

import uuid
from typing import Any

import pytest

from contracts import commands as c
from contracts.client import ContactClient

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


def cid() -> str:
    return str(uuid.uuid4())


async def test_the_seed_tutorial_end_to_end(running_service: object, client: ContactClient) -> None:
    # Create a contact
    created = await client.command(
        c.CreateContact(command_id=cid(), customer_id=CUSTOMER, contact=TUTORIAL_CREATE)
    )  # type: ignore[arg-type]
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

    # Get a list of contacts
    listed = await client.list_contacts(CUSTOMER, page_size=10)
    assert listed.ok and [r.id for r in listed.result] == [contact_id] and listed.next_page_token == ""

    # Get a specific contact
    got = await client.get(CUSTOMER, contact_id)
    assert got.ok and got.result == contact

    # Update a contact: only the given fields change
    updated = await client.command(
        c.UpdateContact(
            command_id=cid(),
            customer_id=CUSTOMER,
            contact_id=contact_id,
            changes={  # type: ignore[arg-type]
                "first_name": "John",
                "last_name": "Smith",
                "display_name": "John Smith (VIP)",
                "company": "Acme Corporation",
                "job_title": "Senior Account Manager",
                "notes": "Promoted to senior role in January",
            },
        )
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
    added = await client.command(
        c.AddPhoneNumber(
            command_id=cid(),
            customer_id=CUSTOMER,
            contact_id=contact_id,
            phone_number={"number": "+15553334444", "type": "home", "is_primary": False},  # type: ignore[arg-type]
        )
    )
    assert added.ok and added.result is not None
    home = next(p for p in added.result.phone_numbers if p.number_e164 == "+15553334444")
    assert home.type == "home" and not home.is_primary

    # Update a phone number: becoming primary demotes the old primary
    changed = await client.command(
        c.UpdatePhoneNumber(
            command_id=cid(),
            customer_id=CUSTOMER,
            contact_id=contact_id,
            phone_number_id=home.id,
            changes={"number": "+15553334444", "type": "mobile", "is_primary": True},  # type: ignore[arg-type]
        )
    )
    assert changed.ok and changed.result is not None
    assert [(p.number_e164, p.is_primary) for p in changed.result.phone_numbers] == [
        ("+15551234567", False),
        ("+15559876543", False),
        ("+15553334444", True),
    ]

    # Remove a phone number: it no longer identifies the caller
    removed = await client.command(
        c.RemovePhoneNumber(
            command_id=cid(), customer_id=CUSTOMER, contact_id=contact_id, phone_number_id=home.id
        )
    )
    assert removed.ok and removed.result is not None and len(removed.result.phone_numbers) == 2
    gone = await client.lookup_phone(CUSTOMER, "+15553334444")
    assert not gone.ok and gone.error is not None and gone.error.code == "CONTACT_NOT_FOUND"

    # Add an email address
    added_email = await client.command(
        c.AddEmail(
            command_id=cid(),
            customer_id=CUSTOMER,
            contact_id=contact_id,
            email={"address": "john.smith@gmail.com", "type": "personal", "is_primary": False},  # type: ignore[arg-type]
        )
    )
    assert added_email.ok and added_email.result is not None
    personal = next(e for e in added_email.result.emails if e.address == "john.smith@gmail.com")

    # Update an email address: becoming primary demotes the old primary
    made_primary = await client.command(
        c.UpdateEmail(
            command_id=cid(),
            customer_id=CUSTOMER,
            contact_id=contact_id,
            email_id=personal.id,
            changes={"address": "john.smith@gmail.com", "type": "personal", "is_primary": True},  # type: ignore[arg-type]
        )
    )
    assert made_primary.ok and made_primary.result is not None
    assert [(e.address, e.is_primary) for e in made_primary.result.emails] == [
        ("john@acme.com", False),
        ("john.smith@gmail.com", True),
    ]

    # Remove an email address
    removed_email = await client.command(
        c.RemoveEmail(command_id=cid(), customer_id=CUSTOMER, contact_id=contact_id, email_id=personal.id)
    )
    assert removed_email.ok and removed_email.result is not None
    assert [e.address for e in removed_email.result.emails] == ["john@acme.com"]

    # Add a tag, then remove one
    tagged = await client.command(
        c.AddTag(
            command_id=cid(),
            customer_id=CUSTOMER,
            contact_id=contact_id,
            tag_id="uuid-for-partner-tag",
        )
    )
    assert tagged.ok and tagged.result is not None and "uuid-for-partner-tag" in tagged.result.tag_ids
    untagged = await client.command(
        c.RemoveTag(
            command_id=cid(),
            customer_id=CUSTOMER,
            contact_id=contact_id,
            tag_id="uuid-for-enterprise-tag",
        )
    )
    assert untagged.ok and untagged.result is not None
    assert untagged.result.tag_ids == ["uuid-for-vip-tag", "uuid-for-partner-tag"]

    # Delete a contact: soft delete; it vanishes from get, list and lookup; its numbers are free again
    deleted = await client.command(
        c.DeleteContact(command_id=cid(), customer_id=CUSTOMER, contact_id=contact_id)
    )
    assert deleted.ok and deleted.result is not None and deleted.result.tm_delete is not None
    assert (await client.get(CUSTOMER, contact_id)).error.code == "CONTACT_NOT_FOUND"  # type: ignore[union-attr]
    assert (await client.list_contacts(CUSTOMER)).result == []
    assert not (await client.lookup_phone(CUSTOMER, "+15551234567")).ok
    assert not (await client.lookup_email(CUSTOMER, "john@acme.com")).ok
    again = await client.command(
        c.CreateContact(command_id=cid(), customer_id=CUSTOMER, contact=TUTORIAL_CREATE)
    )  # type: ignore[arg-type]
    assert again.ok and again.result is not None and again.result.id != contact_id
    twice = await client.command(
        c.DeleteContact(command_id=cid(), customer_id=CUSTOMER, contact_id=contact_id)
    )
    assert twice.ok
