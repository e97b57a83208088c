"""CRM sync and bulk-create throughput, end to end, next to the raw store ceiling; peak memory.

    PYTHONPATH=. .cache/venv/bin/python -m tests.benchmarks.bench_sync [--sync 100000] [--bulk 20000]
        [--memory 1000000] [--loop asyncio|uvloop]

What each run does and how to read it: tests/benchmarks/README.md. One JSON document on stdout;
progress on stderr.
"""

import argparse
import asyncio
import logging
import os
import time
from typing import Any

from contracts import commands as c
from contracts.client import ContactClient
from tests.benchmarks import crm, raw, report
from tests.benchmarks.load import CONTACTS, make_client
from tests.benchmarks.process import KAFKA, MONGODB, Service, add_loop_option
from tests.benchmarks.stats import Json

log = logging.getLogger("bench_sync")

CUSTOMER = "cust-bench-sync"
TARGET_RATIO = 0.6
BULK = 1000
MEMORY_RUN_DIRECTORY = os.environ.get("LOOKUP_DIRECTORY", "false")
"""The memory run's LOOKUP_DIRECTORY: off unless the environment says otherwise, because the caller
directory's memory grows with the contacts stored by design, and this run is about ingestion."""


def person(i: int) -> Json:
    return {
        "first_name": f"First{i}",
        "last_name": f"Last{i}",
        "company": "Acme",
        "phone_numbers": [{"number": f"+1555{i:07d}", "type": "work", "is_primary": True}],
        "emails": [{"address": f"person{i}@example.com", "type": "work", "is_primary": True}],
    }


async def produce(service: Service, count: int) -> float:
    """``count`` upserts of new contacts on the service's sync topic; seconds that took."""
    messages = (crm.upsert(CUSTOMER, f"sf-{i}", person(i)) for i in range(count))
    return await crm.produce(service.prefix, messages)


async def bench_sync(mongo: Any, count: int) -> Json:
    """Topic -> store -> change events: from the service's start-up until it applied ``count``
    upserts produced before it started (start-up measured apart)."""
    service = Service.fresh("bs", "bench_sync")
    log.info("sync: producing %d messages", count)
    produce_seconds = await produce(service, count)
    startup = await service.start()
    try:
        log.info("sync: service up, ingesting")
        elapsed = await crm.wait_applied(service, count)
        memory = service.memory()
    finally:
        await service.stop()
    runs, docs = await raw.rewrite(mongo, service.database)
    contacts = await mongo[service.database][CONTACTS].count_documents({})
    await mongo.drop_database(service.database)
    return {
        "messages": count,
        "contacts_written": contacts,
        "produce_seconds": round(produce_seconds, 2),
        "service_startup_seconds": round(startup, 2),
        **raw.versus_rewrite(count, elapsed, runs, docs, TARGET_RATIO),
        "service_rss_mb_at_end": memory["VmRSS"],
        "service_peak_rss_mb": memory["VmHWM"],
    }


def bulk_commands(count: int) -> list[c.BulkCreateContacts]:
    return [
        c.BulkCreateContacts(
            command_id=f"bulk-{start}",
            customer_id=CUSTOMER,
            contacts=[person(i) | {"external_id": f"x-{i}"} for i in range(start, min(count, start + BULK))],
        )
        for start in range(0, count, BULK)
    ]


async def bench_bulk(mongo: Any, count: int) -> Json:
    """``count`` contacts in bulk creates of 1,000 sent at once, until the last reply. The service
    applies them one after another: one customer's commands share a key, so one partition."""
    service = Service.fresh("bb", "bench_bulk")
    await service.start()
    try:
        async with ContactClient(KAFKA, topic_prefix=service.prefix) as client:
            log.info("bulk: %d contacts in commands of %d", count, BULK)
            commands = bulk_commands(count)
            started = time.perf_counter()
            replies = await asyncio.gather(*(client.bulk_create(cmd, timeout=600) for cmd in commands))
            elapsed = time.perf_counter() - started
            for command, reply in zip(commands, replies, strict=True):
                assert reply.ok and reply.created == len(command.contacts), reply.errors[:3]
    finally:
        await service.stop()
    runs, docs = await raw.rewrite(mongo, service.database)
    await mongo.drop_database(service.database)
    return {"contacts": count, **raw.versus_rewrite(count, elapsed, runs, docs, TARGET_RATIO)}


async def bench_memory(mongo: Any, count: int) -> Json:
    """The service's RSS, sampled every second while it ingests ``count`` sync messages."""
    service = Service.fresh("bm", "bench_mem", LOOKUP_DIRECTORY=MEMORY_RUN_DIRECTORY)
    log.info("memory: producing %d messages", count)
    await produce(service, count)
    await service.start()
    samples: list[tuple[int, int]] = []
    try:
        log.info("memory: ingesting")
        elapsed = await crm.wait_applied(service, count, poll=1.0, samples=samples)
        memory = service.memory()
    finally:
        await service.stop()
    await mongo.drop_database(service.database)

    def rss_at(fraction: float) -> int:
        return next(rss for done, rss in samples if done >= fraction * count)

    return {
        "messages": count,
        "lookup_directory": MEMORY_RUN_DIRECTORY,
        "seconds": round(elapsed, 1),
        "contacts_per_second": round(count / elapsed, 1),
        "peak_rss_mb": memory["VmHWM"],
        "rss_mb_at_progress": {f"{int(f * 100)}%": rss_at(f) for f in (0.1, 0.5, 0.9, 1.0)},
    }


async def main(args: argparse.Namespace) -> Json:
    mongo = make_client(MONGODB)
    result: Json = {"environment": report.brief_environment(args.loop)}
    try:
        if args.sync:
            result["sync_upserts"] = await bench_sync(mongo, args.sync)
        if args.bulk:
            result["bulk_create"] = await bench_bulk(mongo, args.bulk)
        if args.memory:
            result["memory"] = await bench_memory(mongo, args.memory)
    finally:
        await mongo.close()
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sync", type=int, default=100_000, help="sync messages for the throughput run")
    parser.add_argument("--bulk", type=int, default=20_000, help="contacts for the bulk-create run")
    parser.add_argument(
        "--memory", type=int, default=1_000_000, help="sync messages for the memory run (0: skip)"
    )
    add_loop_option(parser)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    report.run(main(arguments), loop=arguments.loop)
