"""Changes to existing contacts, end to end, at two store sizes, next to a raw PyMongo ceiling.

    PYTHONPATH=. .cache/venv/bin/python -m tests.benchmarks.bench_write [--sizes 1000 100000] [--ops 400]
        [--latency-ops 100] [--warmup 20]

What each kind measures, the targets and how to read them: tests/benchmarks/README.md. One JSON
document on stdout; progress on stderr.
"""

import argparse
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from contracts import commands as c
from contracts.client import ContactClient
from contracts.models import ContactPatch, PhoneNumberInput, PhoneNumberType
from tests.benchmarks import crm, report, writes
from tests.benchmarks.load import ContactSet, load, make_client
from tests.benchmarks.process import KAFKA, MONGODB, Service
from tests.benchmarks.raw import contact_docs, replace_pass, replace_summary
from tests.benchmarks.stats import Json, throughput

log = logging.getLogger("bench_write")

CUSTOMER = "cust-bench-write"
SCALING_TARGET = 0.8
RAW_TARGET = 0.5
BULK_DELETE_TARGET_SECONDS = 10.0
LIST_TARGET = 2.0
LIST_PAGES = 20
ADDED = "+1666"
"""Prefix of the phone numbers add_phone_number adds (and remove_phone_number removes)."""
WRITES = (
    "update_contact",
    "add_phone_number",
    "remove_phone_number",
    "delete_contact",
    "bulk_delete_contacts",
    "crm_sync_update",
)

LOADED = ContactSet(
    CUSTOMER,
    "load-",
    lambda i: {
        "first_name": "Caller",
        "last_name": str(i),
        "company": "Bench Inc.",
        "external_id": f"ext-{i}",
        "phone_numbers": [{"number": f"+1555{i:07d}", "type": "mobile", "is_primary": True}],
        "emails": [{"address": f"caller{i}@example.com", "type": "work", "is_primary": True}],
    },
)


def synced(i: int) -> Json:
    """Contact i as a CRM sync update sends it."""
    return {
        "first_name": "Synced",
        "last_name": str(i),
        "phone_numbers": [{"number": f"+1555{i:07d}", "type": "mobile", "is_primary": True}],
    }


class _Target(TypedDict):
    command_id: str
    customer_id: str
    contact_id: str


@dataclass
class Kinds:
    """The command of each kind for contact number i. Changes go to loaded contacts; removals to
    the numbers just added (``added``: i -> phone id); deletes to contacts created for them."""

    doomed: list[str] = field(default_factory=list)
    added: dict[int, str] = field(default_factory=dict)

    @staticmethod
    def _target(kind: str, i: int, contact_id: str | None = None) -> _Target:
        contact_id = LOADED.contact_id(i) if contact_id is None else contact_id
        return {"command_id": f"{kind}-{i}", "customer_id": CUSTOMER, "contact_id": contact_id}

    def update_contact(self, i: int) -> c.ContactCommand:
        return c.UpdateContact(**self._target("u", i), changes=ContactPatch(first_name=f"Updated {i}"))

    def add_phone_number(self, i: int) -> c.ContactCommand:
        phone = PhoneNumberInput(number=f"{ADDED}{i:07d}", type=PhoneNumberType.WORK)
        return c.AddPhoneNumber(**self._target("a", i), phone_number=phone)

    def remove_phone_number(self, i: int) -> c.ContactCommand:
        return c.RemovePhoneNumber(**self._target("r", i), phone_number_id=self.added[i])

    def delete_contact(self, i: int) -> c.ContactCommand:
        return c.DeleteContact(**self._target("d", i, self.doomed[i]))


@dataclass
class SizeRun:
    """One size's measurements, on contacts ``0..ops+latency_ops-1`` (each kind on contacts no
    earlier kind changed) and on contacts created to be deleted, so the loaded size stays."""

    client: ContactClient
    service: Service
    db: Any
    size: int
    ops: int
    latency_ops: int
    result: Json
    kinds: Kinds = field(default_factory=Kinds)
    raw: list[list[float]] = field(default_factory=list)

    @property
    def per_op(self) -> int:
        return self.ops + self.latency_ops

    def step(self, what: str) -> None:
        log.info("size %d: %s", self.size, what)

    async def prepare(self, warmup: float) -> None:
        # Unmeasured first command: the client's reply topic, the service's consumer group, caches.
        await self.client.command(self.kinds.update_contact(self.size - 1), timeout=60)
        self.step(f"creating {self.per_op + writes.BULK} contacts to delete")
        self.kinds.doomed = await writes.create(
            self.client, CUSTOMER, self.per_op + writes.BULK, tag="doomed"
        )
        self.step(f"warm-up, {warmup:.0f}s")
        spare = [LOADED.contact_id(i) for i in range(self.per_op, min(self.size, self.per_op + 200))]
        self.result["warmup_commands"] = await writes.warm_up(self.client, CUSTOMER, spare, warmup)

    async def raw_pass(self, which: str) -> None:
        self.step(f"raw replace_one, {which} pass")
        self.raw.append(await replace_pass(self.db, [LOADED.contact_id(i) for i in range(self.ops)]))

    async def commands(self, name: str, make: writes.Make) -> None:
        self.step(name)
        self.result[name] = await writes.measure_commands(
            self.client, make, ops=self.ops, latency_ops=self.latency_ops
        )

    async def added_phones(self) -> dict[int, str]:
        ids = [LOADED.contact_id(i) for i in range(self.per_op)]
        docs = await contact_docs(self.db, ids, {"phone_numbers": True})
        return {
            i: next(p["id"] for p in doc["phone_numbers"] if p["number"].startswith(ADDED))
            for i, doc in enumerate(docs)
        }

    async def sync_updates(self) -> Json:
        """CRM sync updates (a newer crm_version) of loaded contacts: first message to last applied."""
        since = await self.service.get("/metrics")
        began = time.perf_counter()
        messages = (crm.upsert(CUSTOMER, f"ext-{i}", synced(i), version=2) for i in range(self.ops))
        await crm.produce(self.service.prefix, messages, linger_ms=5)
        await crm.wait_applied(self.service, self.ops, since=since, poll=0.02)
        return throughput(self.ops, time.perf_counter() - began)

    async def measure(self) -> None:
        """The kinds in turn, with raw ceiling passes before, half-way and after them."""
        await self.raw_pass("first")
        self.step("list")
        self.result["list_contacts"] = await writes.measure_list(self.client, CUSTOMER, pages=LIST_PAGES)
        await self.commands("update_contact", self.kinds.update_contact)
        await self.commands("add_phone_number", self.kinds.add_phone_number)
        self.kinds.added = await self.added_phones()
        await self.commands("remove_phone_number", self.kinds.remove_phone_number)
        await self.raw_pass("second")
        await self.commands("delete_contact", self.kinds.delete_contact)
        self.step("bulk_delete_contacts")
        doomed = self.kinds.doomed[self.per_op :]
        self.result["bulk_delete_contacts"] = await writes.bulk_delete(self.client, CUSTOMER, doomed)
        self.step("crm sync updates")
        self.result["crm_sync_update"] = await self.sync_updates()
        await self.raw_pass("third")
        self.result["raw_replace_one"] = replace_summary(self.raw)


async def bench_size(mongo: Any, size: int, *, ops: int, latency_ops: int, warmup: float) -> Json:
    # Caller directory off: it only follows events here, and bench_lookup measures it.
    service = Service.fresh("bw", "bench_write", LOOKUP_DIRECTORY="false")
    db = mongo[service.database]
    try:
        log.info("size %d: loading", size)
        result: Json = {"load_seconds": round((await load(db, LOADED, size))["seconds"], 1)}
        await service.start()
        async with ContactClient(KAFKA, topic_prefix=service.prefix) as client:
            run = SizeRun(client, service, db, size, ops, latency_ops, result)
            await run.prepare(warmup)
            await run.measure()
        return result
    finally:
        await service.stop()
        await mongo.drop_database(service.database)


def summarize(results: dict[int, Json]) -> Json:
    small, large = min(results), max(results)
    summary: Json = {}
    for name in WRITES:
        at = {size: results[size][name]["per_second"] for size in results}
        raw = {size: results[size]["raw_replace_one"]["per_second"] for size in results}
        to_raw = {str(size): round(at[size] / raw[size], 3) for size in results}
        scaling = round(at[large] / at[small], 3)
        summary[name] = {
            "per_second": {str(s): v for s, v in at.items()},
            "ratio_to_raw": to_raw,
            "ratio_largest_to_smallest": scaling,
            "meets_scaling_target": scaling >= SCALING_TARGET,
            "meets_raw_target": all(r >= RAW_TARGET for r in to_raw.values()),
        }
    bulk = {str(s): results[s]["bulk_delete_contacts"]["seconds"] for s in results}
    summary["bulk_delete_1000_seconds"] = bulk
    summary["bulk_delete_meets_target"] = all(v <= BULK_DELETE_TARGET_SECONDS for v in bulk.values())
    lists = {str(s): results[s]["list_contacts"]["p50_ms"] for s in results}
    list_ratio = round(lists[str(large)] / lists[str(small)], 3)
    summary["list_p50_ms"] = lists
    summary["list_ratio_largest_to_smallest"] = list_ratio
    summary["list_meets_target"] = list_ratio <= LIST_TARGET
    summary["all_targets_met"] = (
        all(summary[n]["meets_scaling_target"] and summary[n]["meets_raw_target"] for n in WRITES)
        and summary["bulk_delete_meets_target"]
        and summary["list_meets_target"]
    )
    return summary


async def main(args: argparse.Namespace) -> Json:
    mongo = make_client(MONGODB)
    began = time.perf_counter()
    try:
        results = {
            size: await bench_size(
                mongo, size, ops=args.ops, latency_ops=args.latency_ops, warmup=args.warmup
            )
            for size in args.sizes
        }
    finally:
        await mongo.close()
    return {
        "config": {
            "sizes": args.sizes,
            "ops": args.ops,
            "latency_ops": args.latency_ops,
            "warmup_seconds": args.warmup,
            "bulk": writes.BULK,
        },
        **{str(size): result for size, result in results.items()},
        "summary": summarize(results),
        "runtime_seconds": round(time.perf_counter() - began, 1),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--ops", type=int, default=400, help="commands per kind sent at once (throughput)")
    parser.add_argument("--latency-ops", type=int, default=100, help="commands per kind sent one at a time")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds of unmeasured updates per size")
    args = parser.parse_args(argv)
    if min(args.sizes) < args.ops + args.latency_ops:
        parser.error(f"--sizes must be at least --ops + --latency-ops ({args.ops + args.latency_ops})")
    return args


def run(argv: Sequence[str] | None = None) -> None:
    report.run(main(parse_args(argv)))


if __name__ == "__main__":
    run()
