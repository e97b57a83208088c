"""What the service asks of its store, checked against the real one: every read and write a
command, a bulk, a CRM sync batch or a list issues is answered from an index (MongoDB's, or the
local FerretDB's with deploy/local/ferretdb/local.patch), and a compare-and-set is atomic.

The filters are recorded as the store receives them (PyMongo command monitoring on the adapters'
own client), then each distinct one is explained by the store itself: a plan that scans fails.
"""

import asyncio
import json
import re
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring

from contracts import commands as c
from contracts import queries as q
from contracts.sync import CrmContactDeleted, CrmContactUpserted
from service.adapters.mongo import (
    ensure_schema,
)
from service.service_layer.context import Services
from service.service_layer.handlers import handle_command
from service.service_layer.ports import JsonDict, Outcome
from service.service_layer.queries import list_contacts
from service.service_layer.sync import apply_sync_batch
from tests import factories
from tests.conftest import Endpoints, store_services
from tests.factories import CommandT

pytestmark = pytest.mark.integration

CUSTOMER = "cust-store-paths"
FILTERED = {"find": "filter", "findAndModify": "query", "count": "query"}


class Recorder(monitoring.CommandListener):
    """Every filter sent: (collection, filter, sort) per find, update and delete statement."""

    def __init__(self) -> None:
        self.filters: list[tuple[str, JsonDict, JsonDict | None]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = event.command
        name = event.command_name
        if name in FILTERED:
            self.filters.append((command[name], dict(command.get(FILTERED[name]) or {}), command.get("sort")))
        elif name in ("update", "delete"):
            for statement in command.get("updates" if name == "update" else "deletes", []):
                self.filters.append((command[name], dict(statement["q"]), None))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.current = datetime.now(UTC)

    def now(self) -> datetime:
        return self.current


class Events:
    async def publish(self, *, events: Sequence[JsonDict]) -> None:
        pass


@pytest.fixture
async def store(
    endpoints: Endpoints, isolation: tuple[str, str]
) -> AsyncIterator[tuple[Services, Recorder, Any]]:
    recorder = Recorder()
    client: AsyncMongoClient[JsonDict] = AsyncMongoClient(
        endpoints.mongodb, tz_aware=True, event_listeners=[recorder]
    )
    db = client[isolation[1]]
    await ensure_schema(db)
    svc = store_services(db, clock=Clock(), events=Events())
    try:
        yield svc, recorder, db
    finally:
        await client.drop_database(isolation[1])
        await client.close()


def command(kind: type[CommandT], n: int, **body: Any) -> CommandT:
    return factories.command(kind, command_id=f"cmd-{n}", customer_id=CUSTOMER, **body)


async def every_write_path(svc: Services) -> None:
    """Each command type, a bulk create (new and existing external ids), a bulk delete, a CRM
    sync batch (create, update, delete), a lost address race and a list, through the handlers."""

    async def run(cmd: c.ContactCommand) -> JsonDict:
        reply = await handle_command(cmd, svc=svc)
        assert reply["ok"] is True, reply
        return reply

    phone = {"number": "+15550001111", "type": "mobile"}
    first = await run(command(c.CreateContact, 1, contact={"first_name": "Ann", "phone_numbers": [phone]}))
    cid = first["result"]["id"]
    await run(command(c.UpdateContact, 2, contact_id=cid, changes={"company": "Acme"}))
    added = await run(command(c.AddPhoneNumber, 3, contact_id=cid, phone_number={"number": "+15550002222"}))
    pid = added["result"]["phone_numbers"][1]["id"]
    await run(
        command(
            c.UpdatePhoneNumber, 4, contact_id=cid, phone_number_id=pid, changes={"number": "+15550003333"}
        )
    )
    await run(command(c.RemovePhoneNumber, 5, contact_id=cid, phone_number_id=pid))
    mailed = await run(command(c.AddEmail, 6, contact_id=cid, email={"address": "ann@example.com"}))
    eid = mailed["result"]["emails"][0]["id"]
    await run(command(c.UpdateEmail, 7, contact_id=cid, email_id=eid, changes={"address": "ann@example.org"}))
    await run(command(c.RemoveEmail, 8, contact_id=cid, email_id=eid))
    await run(command(c.AddTag, 9, contact_id=cid, tag_id="vip"))
    await run(command(c.RemoveTag, 10, contact_id=cid, tag_id="vip"))
    taken = await handle_command(
        command(c.CreateContact, 11, contact={"first_name": "Bob", "phone_numbers": [phone]}), svc=svc
    )
    assert taken["error"]["code"] == "ADDRESS_ALREADY_EXISTS"
    items = [{"first_name": f"P{i}", "external_id": f"x-{i}"} for i in range(3)]
    bulk = await run(command(c.BulkCreateContacts, 12, contacts=items))
    again = await run(command(c.BulkCreateContacts, 13, contacts=[{**items[0], "company": "Acme"}]))
    assert again["updated"] == 1
    ids = [i["contact_id"] for i in bulk["items"]]
    await run(command(c.BulkDeleteContacts, 14, contact_ids=[*ids[1:], "no-such-contact"]))
    await run(command(c.DeleteContact, 15, contact_id=cid))

    phones = {"s-1": "+15550009998", "s-2": "+15550009999"}

    def upsert(external_id: str, version: int) -> CrmContactUpserted:
        return CrmContactUpserted.model_validate(
            {
                "customer_id": CUSTOMER,
                "crm": "hubspot",
                "external_id": external_id,
                "crm_version": version,
                "contact": {"first_name": f"S{version}", "phone_numbers": [{"number": phones[external_id]}]},
            }
        )

    await apply_sync_batch([(0, upsert("s-1", 1))], svc=svc)
    await apply_sync_batch([(0, upsert("s-1", 2)), (1, upsert("s-2", 1))], svc=svc)
    gone = CrmContactDeleted.model_validate(
        {"customer_id": CUSTOMER, "crm": "hubspot", "external_id": "s-1", "crm_version": 3}
    )
    await apply_sync_batch([(0, gone)], svc=svc)
    page = await list_contacts(q.ListContacts(customer_id=CUSTOMER, page_size=1), svc=svc)
    assert page.ok and page.next_page_token
    await list_contacts(
        q.ListContacts(customer_id=CUSTOMER, page_size=1, page_token=page.next_page_token), svc=svc
    )


def _is_exact_id(value: Any) -> bool:
    return isinstance(value, str)


def _is_id_range(value: Any) -> bool:
    return isinstance(value, dict) and set(value) <= {"$gt", "$gte", "$lt", "$lte"} and len(value) > 0


async def test_every_read_and_write_of_the_write_paths_is_answered_from_an_index(
    store: tuple[Services, Recorder, Any],
) -> None:
    svc, recorder, db = store
    recorder.filters.clear()
    await every_write_path(svc)
    assert len(recorder.filters) > 50
    shapes: dict[str, tuple[str, JsonDict, JsonDict | None]] = {}
    for collection, flt, sort in recorder.filters:
        where = f"{collection} {flt}"
        assert "_id" in flt, f"no _id in the filter: {where}"
        if collection == "contact_list" and _is_id_range(flt["_id"]):
            assert set(flt) == {"_id"} and sort == {"_id": -1}, where
        else:
            assert _is_exact_id(flt["_id"]), f"not an exact _id: {where}"
        shape = json.dumps([collection, sorted(flt), sort], default=str)
        shapes.setdefault(shape, (collection, flt, sort))
    for collection, flt, sort in shapes.values():
        find: JsonDict = {"find": collection, "filter": flt, "limit": 2}
        if sort:
            find["sort"] = sort
        plan = json.dumps(await db.command("explain", find), default=str)
        assert not re.search(r"COLLSCAN|\bSCAN\b", plan), f"{collection} {flt} scans: {plan}"
        assert "TEMP B-TREE" not in plan and "SORT" not in plan, f"{collection} {flt} sorts: {plan}"
        assert "IDHACK" in plan or "IXSCAN" in plan or "USING INDEX" in plan or "EXPRESS" in plan, plan


async def test_a_compare_and_set_lets_exactly_one_of_many_concurrent_writers_win(
    store: tuple[Services, Recorder, Any],
) -> None:
    _, _, db = store
    for round_ in range(5):
        await db.cas.insert_one({"_id": f"doc-{round_}", "version": 1, "writer": None})
        results = await asyncio.gather(
            *(
                db.cas.replace_one({"_id": f"doc-{round_}", "version": 1}, {"version": 2, "writer": w})
                for w in range(8)
            )
        )
        winners = [w for w, r in enumerate(results) if r.matched_count == 1]
        stored = await db.cas.find_one({"_id": f"doc-{round_}"})
        assert len(winners) == 1 and stored is not None and stored["writer"] == winners[0], (winners, stored)


async def test_a_database_written_before_the_listing_existed_is_listed_after_start_up(
    store: tuple[Services, Recorder, Any],
) -> None:
    svc, _, db = store
    created = [
        await handle_command(command(c.CreateContact, n, contact={"first_name": f"N{n}"}), svc=svc)
        for n in range(3)
    ]
    gone = created[1]["result"]["id"]
    assert (await handle_command(command(c.DeleteContact, 9, contact_id=gone), svc=svc))["ok"]
    # As the previous version left it: contacts, no listing, no mark.
    await db.drop_collection("contact_list")
    await db.drop_collection("schema_marks")
    assert (await list_contacts(q.ListContacts(customer_id=CUSTOMER), svc=svc)).result == []
    await ensure_schema(db)
    listed = await list_contacts(q.ListContacts(customer_id=CUSTOMER), svc=svc)
    assert [x.id for x in listed.result] == [created[2]["result"]["id"], created[0]["result"]["id"]]
    await db.contact_list.delete_many({})  # marked done: a restart does not fill it again
    await ensure_schema(db)
    assert (await list_contacts(q.ListContacts(customer_id=CUSTOMER), svc=svc)).result == []


async def test_a_bulk_compare_and_set_writes_the_current_and_names_the_changed(
    store: tuple[Services, Recorder, Any],
) -> None:
    svc, _, _ = store
    ids = []
    for n in range(3):
        reply = await handle_command(command(c.CreateContact, n, contact={"first_name": f"N{n}"}), svc=svc)
        ids.append(reply["result"]["id"])
    moved = await handle_command(
        command(c.UpdateContact, 7, contact_id=ids[1], changes={"company": "X"}), svc=svc
    )
    assert moved["ok"]
    stored = await svc.contacts.get_many(customer_id=CUSTOMER, contact_ids=ids)
    writes = []
    for n, contact_id in enumerate(ids):
        contact = stored[contact_id].contact
        contact.first_name, version = "Bulk", 1  # contact 1 is at version 2 by now: its write loses
        contact.touch(contact.tm_create)
        writes.append((contact, version, Outcome(CUSTOMER, f"bulk#{n}", "bulk_update", {}, [])))
    assert await svc.contacts.replace_many(items=writes) == {ids[1]}
    after = await svc.contacts.get_many(customer_id=CUSTOMER, contact_ids=ids)
    assert [after[i].contact.first_name for i in ids] == ["Bulk", "N1", "Bulk"]
