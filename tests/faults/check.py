"""The invariants, checked after a run against the store, the events topic and a fault-free run."""

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer
from pymongo import AsyncMongoClient

from service.adapters.kafka import topic_partitions
from tests.faults.workload import CommandCustomer, JsonDict


@dataclass
class Violations:
    found: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, kind: str, detail: str) -> None:
        self.found[kind].append(detail)

    def summary(self, kinds: list[str]) -> JsonDict:
        return {
            "counts": {kind: len(self.found.get(kind, [])) for kind in kinds},
            "total": sum(len(v) for v in self.found.values()),
            "examples": {kind: v[:5] for kind, v in self.found.items() if v},
        }


KINDS = [
    "command_without_reply",
    "customers_diverged",
    "reply_differs_from_fault_free_run",
    "contact_differs_from_fault_free_run",
    "contact_missing",
    "contact_unexpected",
    "applied_twice",
    "duplicate_contact",
    "address_on_two_contacts",
    "event_missing",
    "event_out_of_order",
    "lag_not_zero",
    "replay_changed_store",
    "cross_tenant_lookup",
    "instance_crashed",
]


async def contacts(mongodb: str, database: str) -> list[JsonDict]:
    client: AsyncMongoClient[JsonDict] = AsyncMongoClient(mongodb)
    try:
        return [doc async for doc in client[database]["contacts"].find({})]
    finally:
        await client.close()


def canonical(doc: JsonDict, *, versioned: bool = True) -> JsonDict:
    """A contact without what differs between two runs of the same input: ids and timestamps (and the
    version, where it counts batches rather than changes)."""
    drop = {"_id", "id", "last_outcome", "tm_create", "tm_update", "tm_delete"} | (
        set() if versioned else {"version"}
    )
    out = {k: v for k, v in doc.items() if k not in drop}
    out["deleted"] = doc.get("tm_delete") is not None
    for kind in ("phone_numbers", "emails"):
        out[kind] = [{k: v for k, v in e.items() if k not in {"id", "tm_create"}} for e in doc.get(kind, [])]
    return out


def by_handle(docs: list[JsonDict], customers: list[CommandCustomer], v: Violations) -> dict[str, JsonDict]:
    """Contacts keyed by what made them, the same in every run: the creating command (and bulk item)
    for command customers, customer/external_id for sync customers.

    The service applies only the newest of an external contact's versions in one batch, and faults
    change how messages fall into batches: a sync contact's version (how many states were applied),
    and whether a contact deleted in the end was ever created, differ between two correct runs. Sync
    contacts are compared on what callers can see: the active ones, without their version."""
    handles = {cid: h for c in customers for cid, h in c.handles.items()}
    out: dict[str, JsonDict] = {}
    for doc in docs:
        if doc["customer_id"].startswith("fs"):
            if doc.get("tm_delete") is None:
                out[f"{doc['customer_id']}/{doc.get('external_id')}"] = canonical(doc, versioned=False)
            continue
        handle = handles.get(doc["_id"], "")
        if not handle:
            v.add("contact_unexpected", f"{doc['customer_id']} {doc['_id']}: no reply named it")
            continue
        if handle in out:
            v.add("duplicate_contact", handle)
        out[handle] = canonical(doc)
    return out


def store_invariants(docs: list[JsonDict], v: Violations) -> None:
    """No address active on two contacts of a customer; no external id on two active contacts."""
    held: dict[tuple[str, str], str] = {}
    externals: Counter[tuple[str, str]] = Counter()
    for doc in docs:
        if doc.get("tm_delete") is not None:
            continue
        customer = doc["customer_id"]
        if doc.get("external_id"):
            externals[(customer, doc["external_id"])] += 1
        addresses = [p["number_e164"] for p in doc.get("phone_numbers", [])]
        addresses += [e["address"].lower() for e in doc.get("emails", [])]
        for address in addresses:
            other = held.setdefault((customer, address), doc["_id"])
            if other != doc["_id"]:
                v.add("address_on_two_contacts", f"{customer} {address}: {other} and {doc['_id']}")
    for (customer, external), n in externals.items():
        if n > 1:
            v.add("duplicate_contact", f"{customer} external {external} on {n} active contacts")


def compare(faulty: dict[str, JsonDict], reference: dict[str, JsonDict], v: Violations) -> None:
    for handle, expected in reference.items():
        got = faulty.get(handle)
        if got is None:
            v.add("contact_missing", handle)
        elif got != expected:
            if got.get("version", 0) > expected.get("version", 0):
                v.add("applied_twice", f"{handle}: version {got.get('version')} > {expected.get('version')}")
            diff = {
                k: (got.get(k), expected.get(k))
                for k in expected.keys() | got.keys()
                if got.get(k) != expected.get(k)
            }
            v.add("contact_differs_from_fault_free_run", f"{handle}: {json.dumps(diff, default=str)[:400]}")
    for handle in faulty.keys() - reference.keys():
        v.add("contact_unexpected", handle)


async def read_events(bootstrap: str, topic: str) -> list[JsonDict]:
    """The whole events topic, from the beginning to the end offsets read at the start."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await topic_partitions(consumer, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        events: list[JsonDict] = []
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            events += [json.loads(r.value) for records in batch.values() for r in records if r.value]
        return events
    finally:
        await consumer.stop()


def event_invariants(events: list[JsonDict], docs: list[JsonDict], v: Violations) -> JsonDict:
    """Every change announced at least once, per contact in version order, one event per version."""
    seen: dict[str, dict[int, str]] = defaultdict(dict)
    for event in events:
        contact, version, event_id = event["contact_id"], event["version"], event["event_id"]
        versions = seen[contact]
        if version in versions:
            if versions[version] != event_id:
                v.add(
                    "applied_twice", f"{contact} version {version}: events {versions[version]} and {event_id}"
                )
            continue
        if versions and version < max(versions):
            v.add("event_out_of_order", f"{contact}: version {version} after {max(versions)}")
        versions[version] = event_id
    for doc in docs:
        missing = set(range(1, doc.get("version", 1) + 1)) - set(seen.get(doc["_id"], {}))
        if missing:
            v.add("event_missing", f"{doc['_id']}: versions {sorted(missing)[:10]}")
    return {"events": len(events), "duplicates": len(events) - sum(len(s) for s in seen.values())}


def exact(docs: list[JsonDict]) -> dict[str, str]:
    return {doc["_id"]: json.dumps(doc, sort_keys=True, default=str) for doc in docs}


def replay_invariant(before: list[JsonDict], after: list[JsonDict], v: Violations) -> None:
    old, new = exact(before), exact(after)
    for contact_id in old.keys() | new.keys():
        if old.get(contact_id) != new.get(contact_id):
            v.add("replay_changed_store", contact_id)


def signatures(customers: list[CommandCustomer], reference: list[CommandCustomer], v: Violations) -> None:
    """Each reply against the fault-free run's. A customer's next commands are chosen from its replies,
    so after its first divergent reply the runs send it different commands: that first one, per
    customer, is where to look (``customers_diverged``)."""
    expected = {k: s for c in reference for k, s in c.signatures.items()}
    for customer in customers:
        first = True
        for command_id, got in customer.signatures.items():
            if expected.get(command_id) != got:
                detail = f"{command_id}: {got} vs {expected.get(command_id)}"
                v.add("reply_differs_from_fault_free_run", detail)
                if first:
                    v.add("customers_diverged", detail)
                    first = False


def plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
