"""Items of a bulk command or a CRM sync batch: where each comes from, what it asks, what it got.

Each item is applied like a single command of its own (``ItemOrigin``), so a redelivery re-applies
nothing and answers every item as before.
"""

from dataclasses import dataclass, field
from typing import Literal

from contracts.errors import Error
from contracts.models import ContactInput
from service.domain.errors import DomainError
from service.service_layer import mapping
from service.service_layer.ports import Claim, JsonDict


@dataclass(frozen=True, slots=True)
class ItemOrigin:
    """One item of a bulk command or sync batch, as events name their cause."""

    command_id: str
    type: str


@dataclass(frozen=True, slots=True)
class NewItem:
    position: int
    origin: ItemOrigin
    contact_input: ContactInput
    prefix: str
    """How error fields are named: ``contacts[3]`` for a bulk item, ``contact`` for a sync message."""
    claim: Claim | None = None
    """Its external id's claim as found when claiming it failed (it was claimed before)."""


@dataclass(frozen=True, slots=True)
class ItemResult:
    """A bulk item's or sync message's result, its contact in wire form (``BulkItemResult`` as JSON)."""

    index: int
    status: Literal["created", "updated", "failed"]
    contact: JsonDict | None = None
    error: Error | None = None

    @property
    def contact_id(self) -> str | None:
        return None if self.contact is None else str(self.contact["id"])

    def to_json(self) -> JsonDict:
        """``BulkItemResult(...).model_dump(mode="json")``: what an item's stored outcome holds."""
        error = None if self.error is None else self.error.model_dump(mode="json")
        return {"index": self.index, "status": self.status, "contact": self.contact, "error": error}

    @classmethod
    def from_json(cls, doc: JsonDict, *, index: int | None = None) -> "ItemResult":
        error = None if doc.get("error") is None else Error.model_validate(doc["error"])
        return cls(doc["index"] if index is None else index, doc["status"], doc.get("contact"), error)


@dataclass
class ManyOutcome:
    results: dict[int, ItemResult] = field(default_factory=dict)
    events: list[JsonDict] = field(default_factory=list)


def failed_item(item: NewItem, exc: DomainError) -> ItemResult:
    return ItemResult(item.position, "failed", error=_item_error(exc, prefix=item.prefix))


def _item_error(exc: DomainError, *, prefix: str) -> Error:
    """The error, its field named within the item (``contacts[3].emails[0].address``)."""
    error = mapping.to_error(exc)
    if error.field and not error.field.startswith(prefix):
        error = error.model_copy(update={"field": f"{prefix}.{error.field.removeprefix('contact.')}"})
    return error
