"""Commands: imperative, one per operation, all on ``topics.COMMANDS`` and told apart by ``type``.

Every command carries a ``command_id``: redelivering or replaying it gives the same result and
changes nothing twice. ``customer_id`` is the tenant the command acts for.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from contracts.models import (
    ContactInput,
    ContactPatch,
    EmailInput,
    EmailPatch,
    Identifier,
    PhoneNumberInput,
    PhoneNumberPatch,
)

MAX_BULK = 1000


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command_id: Identifier
    customer_id: Identifier


class CreateContact(_Command):
    type: Literal["create_contact"] = "create_contact"
    contact: ContactInput


class UpdateContact(_Command):
    type: Literal["update_contact"] = "update_contact"
    contact_id: Identifier
    changes: ContactPatch


class DeleteContact(_Command):
    """Soft delete: the contact vanishes from reads and releases its numbers and emails."""

    type: Literal["delete_contact"] = "delete_contact"
    contact_id: Identifier


class AddPhoneNumber(_Command):
    type: Literal["add_phone_number"] = "add_phone_number"
    contact_id: Identifier
    phone_number: PhoneNumberInput


class UpdatePhoneNumber(_Command):
    type: Literal["update_phone_number"] = "update_phone_number"
    contact_id: Identifier
    phone_number_id: Identifier
    changes: PhoneNumberPatch


class RemovePhoneNumber(_Command):
    type: Literal["remove_phone_number"] = "remove_phone_number"
    contact_id: Identifier
    phone_number_id: Identifier


class AddEmail(_Command):
    type: Literal["add_email"] = "add_email"
    contact_id: Identifier
    email: EmailInput


class UpdateEmail(_Command):
    type: Literal["update_email"] = "update_email"
    contact_id: Identifier
    email_id: Identifier
    changes: EmailPatch


class RemoveEmail(_Command):
    type: Literal["remove_email"] = "remove_email"
    contact_id: Identifier
    email_id: Identifier


class AddTag(_Command):
    type: Literal["add_tag"] = "add_tag"
    contact_id: Identifier
    tag_id: Identifier


class RemoveTag(_Command):
    type: Literal["remove_tag"] = "remove_tag"
    contact_id: Identifier
    tag_id: Identifier


class BulkCreateContacts(_Command):
    """Up to 1,000 contacts; each item is a ``ContactInput`` checked on its own, so one bad item
    fails alone (reported with its index) while the rest are still created."""

    type: Literal["bulk_create_contacts"] = "bulk_create_contacts"
    contacts: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=MAX_BULK)]


class BulkDeleteContacts(_Command):
    type: Literal["bulk_delete_contacts"] = "bulk_delete_contacts"
    contact_ids: Annotated[list[Identifier], Field(min_length=1, max_length=MAX_BULK)]


ContactCommand = Annotated[
    CreateContact
    | UpdateContact
    | DeleteContact
    | AddPhoneNumber
    | UpdatePhoneNumber
    | RemovePhoneNumber
    | AddEmail
    | UpdateEmail
    | RemoveEmail
    | AddTag
    | RemoveTag
    | BulkCreateContacts
    | BulkDeleteContacts,
    Field(discriminator="type"),
]
COMMAND_ADAPTER: TypeAdapter[ContactCommand] = TypeAdapter(ContactCommand)
