"""CRM sync against hand-written fakes: newest state wins once, stale counted, conflicts per item,
deletes, replay convergence and recovery from a failure in the middle of a batch."""

import asyncio
from typing import Any

import pytest

from contracts.sync import SYNC_ADAPTER, CrmContactDeleted, CrmContactUpserted, SyncMessage
from service.domain.model import Address, Contact
from service.service_layer.ports import FREE, JsonDict
from service.service_layer.sync import apply_sync_batch
from tests.unit.fakes import FakeContacts, FakeServices, make_services

CUST = "cust-1"


def upsert(external_id: str, version: int, *, phone: str = "", **fields: Any) -> CrmContactUpserted:
    contact = {"first_name": fields.pop("first_name", external_id), **fields}
    if phone:
        contact["phone_numbers"] = [{"number": phone}]
    return CrmContactUpserted.model_validate(
        {
            "customer_id": CUST,
            "crm": "hubspot",
            "external_id": external_id,
            "crm_version": version,
            "contact": contact,
        }
    )


def delete(external_id: str, version: int) -> CrmContactDeleted:
    return CrmContactDeleted(customer_id=CUST, crm="hubspot", external_id=external_id, crm_version=version)


def batch(*messages: SyncMessage) -> list[tuple[int, SyncMessage]]:
    return list(enumerate(messages))


def contacts_of(svc: FakeServices) -> dict[str, Contact]:
    return {c.external_id: c for c, _ in svc.contacts.rows.values() if not c.is_deleted}


def events_of(svc: FakeServices) -> list[JsonDict]:
    return svc.events.published


async def test_creates_in_bulk_with_source_sync_and_the_newest_state_per_external_id() -> None:
    svc = make_services()
    report = await apply_sync_batch(
        batch(
            upsert("a", 1, phone="+15551110001", company="Old"),
            upsert("b", 1, phone="+15551110002"),
            upsert("a", 3, phone="+15551110001", company="New"),
            upsert("a", 2, phone="+15551110001", company="Middle"),
        ),
        svc=svc,
    )
    assert (report.applied, report.stale, report.failed) == (2, 2, {})
    made = contacts_of(svc)
    assert made["a"].company == "New" and made["a"].source == "sync" and made["b"].source == "sync"
    assert [e["type"] for e in events_of(svc)] == ["contact.created", "contact.created"]
    assert events_of(svc)[0]["cause"]["command_id"] == "sync:hubspot:a:3"


async def test_replaying_a_batch_changes_nothing_and_counts_it_stale() -> None:
    svc = make_services()
    messages = batch(upsert("a", 1, phone="+15551110001"), delete("b", 4), upsert("c", 2))
    await apply_sync_batch(messages, svc=svc)
    before = ({k: (v.version, v.tm_update) for k, v in contacts_of(svc).items()}, len(events_of(svc)))
    again = await apply_sync_batch(messages, svc=svc)
    assert (again.applied, again.stale) == (0, 3)
    assert ({k: (v.version, v.tm_update) for k, v in contacts_of(svc).items()}, len(events_of(svc))) == before


async def test_newer_upsert_updates_older_is_dropped() -> None:
    svc = make_services()
    await apply_sync_batch(batch(upsert("a", 5, phone="+15551110001", company="v5")), svc=svc)
    report = await apply_sync_batch(batch(upsert("a", 4, company="v4")), svc=svc)
    assert report.stale == 1 and contacts_of(svc)["a"].company == "v5"
    report = await apply_sync_batch(batch(upsert("a", 6, phone="+15551110009", company="v6")), svc=svc)
    assert report.applied == 1
    updated = contacts_of(svc)["a"]
    assert updated.company == "v6" and [p.number_e164 for p in updated.phone_numbers] == ["+15551110009"]
    assert updated.version == 2 and events_of(svc)[-1]["type"] == "contact.updated"
    # The replaced number is free again, the new one is claimed.
    owners = await svc.addresses.owners(
        customer_id=CUST, addresses=[Address("phone", "+15551110001"), Address("phone", "+15551110009")]
    )
    assert list(owners) == [Address("phone", "+15551110009")]


async def test_a_taken_number_fails_its_item_only() -> None:
    svc = make_services()
    await apply_sync_batch(batch(upsert("owner", 1, phone="+15551110001")), svc=svc)
    report = await apply_sync_batch(
        batch(
            upsert("thief", 1, phone="(555) 111-0001"),
            upsert("fine", 1, phone="+15551110002"),
            upsert("twin", 1, phone="+15551110002"),
            upsert("bad", 1, phone="not a phone"),
        ),
        svc=svc,
    )
    assert report.applied == 1 and set(contacts_of(svc)) == {"owner", "fine"}
    assert {p: (e.code, e.field) for p, e in report.failed.items()} == {
        0: ("ADDRESS_ALREADY_EXISTS", "contact.phone_numbers[0].number"),
        2: ("ADDRESS_ALREADY_EXISTS", "contact.phone_numbers[0].number"),
        3: ("INVALID_ARGUMENT", "contact.phone_numbers[0].number"),
    }
    # The failed items hold no claims: an external id's claim stays, owned by no one (FREE).
    assert set(svc.sync_states.states) == {(CUST, "owner"), (CUST, "fine")}
    owner = await svc.addresses.owner(customer_id=CUST, address=Address("external", "thief"))
    assert owner is not None and owner.contact_id == FREE
    external_of = {c.id: c.external_id for c in contacts_of(svc).values()}
    held = {a.value: external_of.get(c.contact_id) for (_, a), c in svc.addresses.claims.items()}
    assert held == {
        "owner": "owner",
        "+15551110001": "owner",
        "fine": "fine",
        "+15551110002": "fine",
        "thief": None,
    }


async def test_delete_is_soft_and_an_older_upsert_does_not_bring_it_back() -> None:
    svc = make_services()
    await apply_sync_batch(batch(upsert("a", 1, phone="+15551110001")), svc=svc)
    report = await apply_sync_batch(batch(delete("a", 2)), svc=svc)
    assert report.applied == 1 and contacts_of(svc) == {}
    assert events_of(svc)[-1]["type"] == "contact.deleted"
    assert (await apply_sync_batch(batch(upsert("a", 1, phone="+15551110001")), svc=svc)).stale == 1
    assert contacts_of(svc) == {}
    # A newer upsert after the delete makes a new contact, which may reuse the released number.
    await apply_sync_batch(batch(upsert("a", 3, phone="+15551110001")), svc=svc)
    assert contacts_of(svc)["a"].phone_numbers[0].number_e164 == "+15551110001"


async def test_a_delete_before_the_contact_existed_keeps_older_upserts_out() -> None:
    svc = make_services()
    assert (await apply_sync_batch(batch(delete("g", 5)), svc=svc)).applied == 1
    assert (await apply_sync_batch(batch(upsert("g", 3, phone="+15551110001")), svc=svc)).stale == 1
    assert contacts_of(svc) == {} and events_of(svc) == []
    assert (await apply_sync_batch(batch(upsert("g", 6, phone="+15551110001")), svc=svc)).applied == 1
    assert contacts_of(svc)["g"].phone_numbers[0].number_e164 == "+15551110001"


async def test_new_external_contacts_are_created_without_reading_what_was_applied() -> None:
    svc = make_services()
    states = svc.sync_states
    await apply_sync_batch(batch(upsert("a", 1), upsert("b", 1), upsert("c", 1)), svc=svc)
    assert states.reads == [] and set(contacts_of(svc)) == {"a", "b", "c"}
    report = await apply_sync_batch(batch(upsert("b", 2, company="B2"), upsert("d", 1)), svc=svc)
    assert states.reads == [(CUST, "b")] and report.applied == 2
    assert contacts_of(svc)["b"].company == "B2" and set(contacts_of(svc)) == {"a", "b", "c", "d"}


async def test_lanes_apply_a_batch_exactly_as_one_lane_does() -> None:
    def mixed() -> list[tuple[int, SyncMessage]]:
        return batch(
            *(upsert(f"x{i}", 1, phone=f"+1555111{i:04d}") for i in range(12)),
            upsert("x3", 2, company="again"),
            delete("x5", 2),
            upsert("bad", 1, phone="not a phone"),
            delete("never", 1),
        )

    results = []
    for lanes in (1, 3):
        svc = make_services()
        report = await apply_sync_batch(mixed(), svc=svc, lanes=lanes)
        states = svc.sync_states
        made = {k: (c.company, [p.number_e164 for p in c.phone_numbers]) for k, c in contacts_of(svc).items()}
        failed = {p: e.code for p, e in report.failed.items()}
        results.append((report.applied, report.stale, failed, made, sorted(states.states)))
    assert results[0] == results[1]
    assert results[0][2] == {14: "INVALID_ARGUMENT"} and results[0][3]["x3"][0] == "again"
    assert "x5" not in results[0][3] and len(results[0][3]) == 11


async def test_two_contacts_wanting_one_number_in_concurrent_lanes_one_wins() -> None:
    svc = make_services()
    report = await apply_sync_batch(
        batch(upsert("p", 1, phone="+15551110001"), upsert("q", 1, phone="+15551110001")), svc=svc, lanes=2
    )
    # Which one wins is not fixed by batch order (nor is it across partitions); one does.
    assert report.applied == 1 and [e.code for e in report.failed.values()] == ["ADDRESS_ALREADY_EXISTS"]
    (winner,) = contacts_of(svc).values()
    assert winner.phone_numbers[0].number_e164 == "+15551110001"


@pytest.mark.parametrize("failing", ["events", "states"])
async def test_a_failure_in_the_middle_is_redelivered_without_loss_or_double_apply(failing: str) -> None:
    svc = make_services()
    messages = batch(upsert("a", 1, phone="+15551110001"), upsert("b", 1, phone="+15551110002"))
    flaky = svc.events if failing == "events" else svc.sync_states
    flaky.fail_next = 1
    with pytest.raises(ConnectionError):
        await apply_sync_batch(messages, svc=svc)
    report = await apply_sync_batch(messages, svc=svc)  # the redelivery
    assert report.applied == 2 and report.failed == {}
    assert set(contacts_of(svc)) == {"a", "b"}
    created = [e for e in events_of(svc) if e["type"] == "contact.created"]
    assert len({e["contact_id"] for e in created}) == 2
    assert len({e["event_id"] for e in created}) == 2  # a re-published event keeps its id


@pytest.mark.parametrize("then", ["update", "delete"])
async def test_a_change_whose_events_failed_is_announced_when_its_redelivery_is_stale(then: str) -> None:
    """Found by the fault suite: a batch applied (created) "a" at version 1, then failed to publish.
    Its redelivery came with a newer message for "a", so only that one was applied: the creation
    was never announced. Now the events of a change newer than the recorded state go out first, and
    are stored with the newer change, so they survive its own redelivery."""
    svc = make_services()
    svc.events.fail_next = 1
    with pytest.raises(ConnectionError):
        await apply_sync_batch(batch(upsert("a", 1, phone="+15551110001")), svc=svc)
    assert events_of(svc) == []
    newer = upsert("a", 2, phone="+15551110001", company="New") if then == "update" else delete("a", 2)
    redelivered = batch(upsert("a", 1, phone="+15551110001"), newer)
    svc.events.fail_next = 1  # and the batch that applies the newer one fails to publish too
    with pytest.raises(ConnectionError):
        await apply_sync_batch(redelivered, svc=svc)
    report = await apply_sync_batch(redelivered, svc=svc)
    assert (report.applied, report.stale) == (1, 1)
    announced = [(e["type"], e["version"]) for e in events_of(svc)]
    assert announced == [("contact.created", 1), (f"contact.{then}d", 2)]
    # Once the state is recorded, a later change announces only itself.
    before = {e["event_id"] for e in events_of(svc)}
    await apply_sync_batch(batch(upsert("a", 3, phone="+15551110001", company="Newer")), svc=svc)
    (later,) = events_of(svc)[2:]
    assert later["event_id"] not in before


def test_a_sync_message_needs_an_order() -> None:
    with pytest.raises(ValueError, match="crm_version or crm_updated_at"):
        SYNC_ADAPTER.validate_python(
            {"type": "crm_contact_deleted", "customer_id": CUST, "crm": "zoho", "external_id": "x"}
        )
    by_time = SYNC_ADAPTER.validate_python(
        {
            "type": "crm_contact_deleted",
            "customer_id": CUST,
            "crm": "zoho",
            "external_id": "x",
            "crm_updated_at": "2026-01-02T03:04:05.000006Z",
        }
    )
    assert by_time.order() == 1767323045000006


class SlowContacts(FakeContacts):
    """Writes take 20 ms; counts how many are under way at once."""

    def __init__(self) -> None:
        super().__init__()
        self.now = self.most = 0

    async def replace(self, **kwargs: Any) -> bool:
        self.now += 1
        self.most = max(self.most, self.now)
        await asyncio.sleep(0.02)
        self.now -= 1
        return await super().replace(**kwargs)


async def test_updates_of_different_contacts_overlap_and_a_number_given_up_goes_to_the_next() -> None:
    contacts = SlowContacts()
    svc = make_services(contacts=contacts)
    await apply_sync_batch(batch(*(upsert(f"x{n}", 1, phone=f"+1555111000{n}") for n in range(4))), svc=svc)
    report = await apply_sync_batch(
        batch(
            upsert("x0", 2, first_name="Renamed", phone="+15551110000"),
            upsert("x1", 2, first_name="Renamed", phone="+15551110001"),
            upsert("x2", 2, first_name="No phone"),  # gives +15551110002 up...
            upsert("x3", 2, phone="+15551110002"),  # ...which the next one takes
        ),
        svc=svc,
    )
    assert report.failed == {}
    assert contacts.most >= 2
    owner = await svc.addresses.owner(customer_id=CUST, address=Address("phone", "+15551110002"))
    assert owner is not None and owner.contact_id == contacts_of(svc)["x3"].id
