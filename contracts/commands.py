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


class _OnContact(_Command):
    contact_id: Identifier


class _OnPhoneNumber(_OnContact):
    phone_number_id: Identifier


class _OnEmail(_OnContact):
    email_id: Identifier


class _OnTag(_OnContact):
    tag_id: Identifier


class UpdateContact(_OnContact):
    type: Literal["update_contact"] = "update_contact"
    changes: ContactPatch


class DeleteContact(_OnContact):
    """Soft delete: the contact vanishes from reads and releases its numbers and emails."""

    type: Literal["delete_contact"] = "delete_contact"


class AddPhoneNumber(_OnContact):
    type: Literal["add_phone_number"] = "add_phone_number"
    phone_number: PhoneNumberInput


class UpdatePhoneNumber(_OnPhoneNumber):
    type: Literal["update_phone_number"] = "update_phone_number"
    changes: PhoneNumberPatch


class RemovePhoneNumber(_OnPhoneNumber):
    type: Literal["remove_phone_number"] = "remove_phone_number"


class AddEmail(_OnContact):
    type: Literal["add_email"] = "add_email"
    email: EmailInput


class UpdateEmail(_OnEmail):
    type: Literal["update_email"] = "update_email"
    changes: EmailPatch


class RemoveEmail(_OnEmail):
    type: Literal["remove_email"] = "remove_email"


class AddTag(_OnTag):
    type: Literal["add_tag"] = "add_tag"


class RemoveTag(_OnTag):
    type: Literal["remove_tag"] = "remove_tag"


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
