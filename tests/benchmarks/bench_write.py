"""Changes to existing contacts, end to end, at two store sizes, next to a raw PyMongo ceiling.

    PYTHONPATH=. .cache/venv/bin/python -m tests.benchmarks.bench_write [--sizes 1000 100000] [--ops 500]

For each size, against the running broker and store (KAFKA_BOOTSTRAP_SERVERS, MONGODB_URL):

1. load: ``size`` contacts of one customer written straight into a fresh database as the service
   writes them (contact, claims of its phone, email and external id, listing entry);
2. the service is started as its own process (``contact-service``, caller directory off: it only
   follows events, and bench_lookup measures it) and warmed up (``--warmup`` seconds of updates of
   contacts no measurement touches), then, each on contacts not touched before:
   ``update_contact``, ``add_phone_number``, ``remove_phone_number`` (the numbers just added),
   ``delete_contact``: ``--ops`` commands sent at once (throughput: commands / seconds until the
   last reply), then ``--latency-ops`` more one at a time (p50, p99 of send → reply);
   ``bulk_delete_contacts`` of 1,000 (seconds until its reply); CRM sync updates of ``--ops``
   existing contacts (a newer ``crm_version``; seconds from the first message to the last applied);
   ``list_contacts`` with page_size 100, 20 pages one after another (p50, p99);
3. raw: ``replace_one({"_id": ...})`` of ``--ops`` stored contact documents, one after another
   (what one compare-and-set write costs the store, with nothing around it), in three passes
   spread over the run (before the commands, half-way, after them); the median pass is the
   ceiling; p50, p99 over all three.

Targets (booleans in the JSON): each throughput at the largest size ≥ 0.8 x at the smallest; each
≥ 0.5 x the raw ceiling of its size; a bulk delete of 1,000 answers in ≤ 10 s; list p50 at the
largest size ≤ 2 x at the smallest. Prints one JSON document on stdout; progress goes to stderr.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from contracts import commands as c
from contracts import topics
from contracts.client import ContactClient
from contracts.sync import sync_key
from service.adapters.mongo import CONTACTS, mark_listed
from service.service_layer.context import Services
from service.service_layer.mapping import derived_id
from tests.benchmarks.bench_sync import KAFKA, MONGODB, Service
from tests.benchmarks.stored import created_docs, merged
from tests.unit.fakes import make_services

CUSTOMER = "cust-bench-write"
CHUNK = 1000
BULK = 1000
SCALING_TARGET = 0.8
RAW_TARGET = 0.5
BULK_DELETE_TARGET_SECONDS = 10.0
LIST_TARGET = 2.0
LIST_PAGES = 20

Doc = dict[str, Any]


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def contact_id(i: int) -> str:
    return derived_id("contact", CUSTOMER, f"load-{i}")


def build_docs(svc: Services, start: int, stop: int) -> dict[str, list[Doc]]:
    """Documents of contacts ``start..stop-1`` as ``create_contact`` writes them."""
    return merged(
        [
            created_docs(
                svc,
                customer_id=CUSTOMER,
                command_id=f"load-{i}",
                contact_id=contact_id(i),
                contact={
                    "first_name": "Caller",
                    "last_name": str(i),
                    "company": "Bench Inc.",
                    "external_id": f"ext-{i}",
                    "phone_numbers": [{"number": f"+1555{i:07d}", "type": "mobile", "is_primary": True}],
                    "emails": [{"address": f"caller{i}@example.com", "type": "work", "is_primary": True}],
                },
            )
            for i in range(start, stop)
        ]
    )


async def load(db: Any, size: int) -> float:
    svc = make_services()
    started = time.perf_counter()
    for start in range(0, size, CHUNK):
        svc.clock.advance(0.001)  # type: ignore[attr-defined]
        docs = build_docs(svc, start, min(size, start + CHUNK))
        await asyncio.gather(*(db[name].insert_many(batch, ordered=False) for name, batch in docs.items()))
        if start and start % 20_000 == 0:
            log(f"  loaded {start}/{size}")
    await mark_listed(db)
    return time.perf_counter() - started


def percentiles(latencies: Sequence[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * len(ordered)) - 1)]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2), "p99_ms": round(p99 * 1000, 2)}


Make = Callable[[int], Any]
"""Builds the command for contact number i."""


async def measure_commands(
    client: ContactClient, make: Make, first: int, *, ops: int, latency_ops: int
) -> Doc:
    """``ops`` commands at once (throughput), then ``latency_ops`` one at a time (p50/p99)."""

    async def send(i: int) -> Any:
        reply = await client.command(make(i), timeout=120)
        if not reply.ok:
            raise SystemExit(f"command for contact {i} failed: {reply.error}")
        return reply

    began = time.perf_counter()
    await asyncio.gather(*(send(i) for i in range(first, first + ops)))
    elapsed = time.perf_counter() - began
    latencies = []
    for i in range(first + ops, first + ops + latency_ops):
        t = time.perf_counter()
        await send(i)
        latencies.append(time.perf_counter() - t)
    return {
        "count": ops,
        "seconds": round(elapsed, 3),
        "per_second": round(ops / elapsed, 1),
        **percentiles(latencies),
    }


async def measure_sync_updates(service: Service, first: int, ops: int) -> Doc:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=5, acks="all")
    await producer.start()
    before = (await service.get("/metrics")).get("sync_applied", 0)
    began = time.perf_counter()
    try:
        sends = []
        for i in range(first, first + ops):
            message = {
                "type": "crm_contact_upserted",
                "customer_id": CUSTOMER,
                "crm": "salesforce",
                "external_id": f"ext-{i}",
                "crm_version": 2,
                "contact": {
                    "first_name": "Synced",
                    "last_name": str(i),
                    "phone_numbers": [{"number": f"+1555{i:07d}", "type": "mobile", "is_primary": True}],
                },
            }
            key = sync_key(CUSTOMER, f"ext-{i}")
            sends.append(
                await producer.send(
                    f"{service.prefix}{topics.CRM_SYNC}", json.dumps(message).encode(), key=key
                )
            )
        await asyncio.gather(*sends)
    finally:
        await producer.stop()
    while True:
        counters = await service.get("/metrics")
        if counters.get("sync_failed", 0):
            raise SystemExit(f"{counters['sync_failed']} sync updates failed")
        if counters.get("sync_applied", 0) - before >= ops:
            break
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - began
    return {"count": ops, "seconds": round(elapsed, 3), "per_second": round(ops / elapsed, 1)}


async def measure_list(client: ContactClient) -> Doc:
    latencies, token, seen = [], "", 0
    for _ in range(LIST_PAGES):
        t = time.perf_counter()
        page = await client.list_contacts(CUSTOMER, page_size=100, page_token=token)
        latencies.append(time.perf_counter() - t)
        if not page.ok or len(page.result) != 100:
            raise SystemExit(f"list page {seen // 100} came back with {len(page.result)} contacts")
        seen, token = seen + len(page.result), page.next_page_token
    return {"pages": LIST_PAGES, "page_size": 100, **percentiles(latencies)}


async def raw_pass(db: Any, ops: int) -> list[float]:
    """One pass of the raw ceiling: ``replace_one`` by ``_id`` of stored contacts 0..ops-1, one
    after another; each call's latency."""
    docs = [await db[CONTACTS].find_one({"_id": contact_id(i)}) for i in range(ops)]
    latencies = []
    for doc in docs:
        doc["first_name"] = "Raw"
        t = time.perf_counter()
        await db[CONTACTS].replace_one({"_id": doc["_id"]}, doc)
        latencies.append(time.perf_counter() - t)
    return latencies


def raw_summary(passes: list[list[float]]) -> Doc:
    """The median pass is the ceiling (a pass swings by a third on a shared machine)."""
    rates = [round(len(p) / sum(p), 1) for p in passes]
    return {
        "count": sum(len(p) for p in passes),
        "passes_per_second": rates,
        "per_second": statistics.median(rates),
        **percentiles([x for p in passes for x in p]),
    }


async def created(client: ContactClient, tag: str, count: int) -> list[str]:
    """``count`` new contacts (bulk creates of at most 1,000), for the deletes to delete."""
    ids: list[str] = []
    for start in range(0, count, BULK):
        items = [
            {"first_name": "Doomed", "last_name": str(i)} for i in range(start, min(count, start + BULK))
        ]
        bulk = c.BulkCreateContacts(command_id=f"doomed-{tag}-{start}", customer_id=CUSTOMER, contacts=items)
        reply = await client.bulk_create(bulk, timeout=300)
        ids += [i.contact_id for i in reply.items if i.contact_id is not None]
    if len(ids) != count:
        raise SystemExit(f"created {len(ids)} contacts to delete, wanted {count}")
    return ids


async def warm_up(client: ContactClient, ids: list[str], seconds: float) -> int:
    """Updates of ``ids`` (contacts no measurement touches), 200 at a time, for ``seconds``: a
    freshly started broker and service spend their first seconds under load compiling and
    filling caches, and that should not fall on the first kind measured. Commands sent."""
    deadline, rounds = time.perf_counter() + seconds, 0
    while ids and time.perf_counter() < deadline:
        await asyncio.gather(
            *(
                client.command(
                    c.UpdateContact.model_validate(
                        {
                            "command_id": f"warm-{rounds}-{i}",
                            "customer_id": CUSTOMER,
                            "contact_id": contact_id,
                            "changes": {"job_title": f"warm {rounds}"},
                        }
                    ),
                    timeout=120,
                )
                for i, contact_id in enumerate(ids)
            )
        )
        rounds += 1
    return rounds * len(ids)


async def bench_size(
    mongo: AsyncMongoClient[Doc], size: int, *, ops: int, latency_ops: int, warmup: float
) -> Doc:
    """Non-destructive kinds on loaded contacts 0..per_op-1; deletes on contacts created for them."""
    tag = uuid.uuid4().hex[:8]
    prefix, database = f"bw{tag}.", f"bench_write_{tag}"
    db = mongo[database]
    per_op = ops + latency_ops
    if size < per_op:
        raise SystemExit(f"--sizes must be at least {per_op} for --ops {ops} --latency-ops {latency_ops}")
    log(f"size {size}: loading")
    load_seconds = await load(db, size)
    service = Service(prefix, database, LOOKUP_DIRECTORY="false")
    try:
        await service.start()
        result: Doc = {"load_seconds": round(load_seconds, 1)}
        async with ContactClient(KAFKA, topic_prefix=prefix) as client:
            added: dict[int, str] = {}

            def update(i: int) -> Any:
                changes = {"first_name": f"Updated {i}"}
                return c.UpdateContact(
                    command_id=f"u-{i}",
                    customer_id=CUSTOMER,
                    contact_id=contact_id(i),
                    changes=changes,  # type: ignore[arg-type]
                )

            def add_phone(i: int) -> Any:
                phone = {"number": f"+1666{i:07d}", "type": "work"}
                return c.AddPhoneNumber(
                    command_id=f"a-{i}",
                    customer_id=CUSTOMER,
                    contact_id=contact_id(i),
                    phone_number=phone,  # type: ignore[arg-type]
                )

            def remove_phone(i: int) -> Any:
                return c.RemovePhoneNumber(
                    command_id=f"r-{i}",
                    customer_id=CUSTOMER,
                    contact_id=contact_id(i),
                    phone_number_id=added[i],
                )

            await client.command(update(size - 1), timeout=60)  # first command: topics, group, caches
            log(f"size {size}: creating {per_op + BULK} contacts to delete")
            doomed = await created(client, tag, per_op + BULK)
            log(f"size {size}: warm-up, {warmup:.0f}s")
            spare = [contact_id(i) for i in range(per_op, min(size, per_op + 200))]
            result["warmup_commands"] = await warm_up(client, spare, warmup)

            def delete(i: int) -> Any:
                return c.DeleteContact(command_id=f"d-{i}", customer_id=CUSTOMER, contact_id=doomed[i])

            log(f"size {size}: raw replace_one, first pass")
            raw = [await raw_pass(db, ops)]
            log(f"size {size}: list")
            result["list_contacts"] = await measure_list(client)
            log(f"size {size}: update_contact")
            result["update_contact"] = await measure_commands(
                client, update, 0, ops=ops, latency_ops=latency_ops
            )
            log(f"size {size}: add_phone_number")
            result["add_phone_number"] = await measure_commands(
                client, add_phone, 0, ops=ops, latency_ops=latency_ops
            )
            for i in range(per_op):
                doc = await db[CONTACTS].find_one({"_id": contact_id(i)}, {"phone_numbers": True}) or {}
                added[i] = next(p["id"] for p in doc["phone_numbers"] if p["number"].startswith("+1666"))
            log(f"size {size}: remove_phone_number")
            result["remove_phone_number"] = await measure_commands(
                client, remove_phone, 0, ops=ops, latency_ops=latency_ops
            )
            log(f"size {size}: raw replace_one, second pass")
            raw.append(await raw_pass(db, ops))
            log(f"size {size}: delete_contact")
            result["delete_contact"] = await measure_commands(
                client, delete, 0, ops=ops, latency_ops=latency_ops
            )
            log(f"size {size}: bulk_delete_contacts")
            bulk = c.BulkDeleteContacts(
                command_id=f"bulk-{tag}", customer_id=CUSTOMER, contact_ids=doomed[per_op:]
            )
            began = time.perf_counter()
            reply = await client.bulk_delete(bulk, timeout=600)
            seconds = time.perf_counter() - began
            if reply.deleted != BULK:
                raise SystemExit(f"bulk delete deleted {reply.deleted} of {BULK}")
            result["bulk_delete_contacts"] = {
                "count": BULK,
                "seconds": round(seconds, 3),
                "per_second": round(BULK / seconds, 1),
            }
            log(f"size {size}: crm sync updates")
            result["crm_sync_update"] = await measure_sync_updates(service, 0, ops)
        log(f"size {size}: raw replace_one, third pass")
        raw.append(await raw_pass(db, ops))
        result["raw_replace_one"] = raw_summary(raw)
        return result
    finally:
        await service.stop()
        await mongo.drop_database(database)


WRITES = (
    "update_contact",
    "add_phone_number",
    "remove_phone_number",
    "delete_contact",
    "bulk_delete_contacts",
    "crm_sync_update",
)


def summarize(results: dict[int, Doc]) -> Doc:
    small, large = min(results), max(results)
    summary: Doc = {}
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


async def main(args: argparse.Namespace) -> None:
    mongo: AsyncMongoClient[Doc] = AsyncMongoClient(MONGODB, tz_aware=True)
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
    report = {
        "config": {
            "sizes": args.sizes,
            "ops": args.ops,
            "latency_ops": args.latency_ops,
            "warmup_seconds": args.warmup,
            "bulk": BULK,
        },
        **{str(size): result for size, result in results.items()},
        "summary": summarize(results),
        "runtime_seconds": round(time.perf_counter() - began, 1),
    }
    print(json.dumps(report, indent=1))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--ops", type=int, default=400, help="commands per kind sent at once (throughput)")
    parser.add_argument("--latency-ops", type=int, default=100, help="commands per kind sent one at a time")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds of unmeasured updates per size")
    return parser.parse_args(argv)


def run(argv: Sequence[str] | None = None) -> None:
    asyncio.run(main(parse_args(argv)))


if __name__ == "__main__":
    run()
