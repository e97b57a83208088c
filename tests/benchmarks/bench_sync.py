"""CRM sync and bulk-create throughput, end to end, next to the raw store ceiling; peak memory.

    PYTHONPATH=. .cache/venv/bin/python -m tests.benchmarks.bench_sync [--sync 100000] [--bulk 20000]
        [--memory 1000000]

What it does, against the running broker and store (KAFKA_BOOTSTRAP_SERVERS, MONGODB_URL; defaults
are the local stack's):

1. sync: produces N ``crm_contact_upserted`` messages (one phone and one email each) to the CRM sync
   topic of a fresh topic prefix, then starts the service as its own process (``contact-service``)
   and times topic → store → change events: from start-up until the service counted N applied items
   (it publishes an item's events before it counts it). Start-up time is measured apart and left out.
2. bulk: sends N contacts as ``bulk_create_contacts`` commands of 1,000, all at once (as the sync
   run has all its messages on the topic), and times from the first send until the last reply.
   The service applies them one after another (they share the customer's key, so one partition).
3. raw: the very documents the service wrote (contacts, address claims, sync states, command log)
   read back and written to a fresh database, with the service's indexes (``ensure_schema``), by
   PyMongo ``insert_many`` in batches of the service's batch size (SYNC_BATCH_SIZE, default 500):
   the ceiling of the same store doing the same index upkeep. Ratios are service / raw (target
   ≥ 0.6). (Until 2026-11-23 the raw run wrote into bare collections; on FerretDB the difference
   is inside the run-to-run swing, 15-21 s for the 20,000-message sync run either way.)
4. memory: ingests M sync messages (default 1,000,000) and samples the service's RSS every second;
   prints peak RSS (VmHWM) and RSS at 10/50/90/100 % of progress to show it stays flat. This run
   measures the ingestion path, with the caller directory off (``LOOKUP_DIRECTORY=false`` unless
   the environment sets it): the directory keeps about 1.2 KB per contact stored, by design.

Prints one JSON document on stdout; progress goes to stderr.
"""

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import sys
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Literal, TypeVar

import uvloop
from aiokafka import AIOKafkaProducer
from pymongo import AsyncMongoClient

from contracts import commands as c
from contracts import topics
from contracts.client import ContactClient
from contracts.sync import sync_key
from service.adapters.mongo import ensure_schema
from tests.conftest import delete_topics

KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
MONGODB = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
BATCH = int(os.environ.get("SYNC_BATCH_SIZE", "500"))
TARGET_RATIO = 0.6
RAW_RUNS = 3


T = TypeVar("T")
Loop = Literal["asyncio", "uvloop"]


def add_loop_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="event loop of the service, the baselines and this driver alike (default: asyncio)",
    )


def run_on(loop: Loop, main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on ``loop``; the service processes started meanwhile use the same loop."""
    os.environ["EVENT_LOOP"] = loop
    return uvloop.run(main) if loop == "uvloop" else asyncio.run(main)


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def sync_message(customer: str, i: int) -> dict[str, Any]:
    return {
        "type": "crm_contact_upserted",
        "customer_id": customer,
        "crm": "salesforce",
        "external_id": f"sf-{i}",
        "crm_version": 1,
        "contact": {
            "first_name": f"First{i}",
            "last_name": f"Last{i}",
            "company": "Acme",
            "phone_numbers": [{"number": f"+1555{i:07d}", "type": "work", "is_primary": True}],
            "emails": [{"address": f"person{i}@example.com", "type": "work", "is_primary": True}],
        },
    }


async def produce(prefix: str, customer: str, count: int) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=20, max_batch_size=1 << 20, acks=1)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for i in range(count):
            value = json.dumps(sync_message(customer, i)).encode()
            pending.append(
                await producer.send(f"{prefix}{topics.CRM_SYNC}", value, key=sync_key(customer, f"sf-{i}"))
            )
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """The service as its own process, so its memory is its own."""

    def __init__(self, prefix: str, database: str, **settings: str) -> None:
        self.prefix, self.database, self.port = prefix, database, free_port()
        self.settings = settings  # more environment for the service (setting name -> value)
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> float:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
            "MONGODB_URL": MONGODB,
            "MONGODB_DATABASE": self.database,
            "TOPIC_PREFIX": self.prefix,
            "CONSUMER_GROUP": f"{self.prefix}svc",
            "HEALTH_PORT": str(self.port),
            "SYNC_BATCH_SIZE": str(BATCH),
            "LOG_LEVEL": "WARNING",
            **self.settings,
        }
        script = Path(sys.executable).parent / "contact-service"
        started = time.perf_counter()
        self.process = await asyncio.create_subprocess_exec(
            str(script), env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        while (await self.get("/readyz")).get("ready") is not True:  # noqa: ASYNC110 (polling HTTP)
            await asyncio.sleep(0.1)
        return time.perf_counter() - started

    async def get(self, path: str) -> dict[str, Any]:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return {}
        writer.write(f"GET {path} HTTP/1.1\r\n\r\n".encode())
        raw = await reader.read()
        writer.close()
        return dict(json.loads(raw.split(b"\r\n\r\n", 1)[1]))

    def memory(self) -> dict[str, int]:
        assert self.process is not None
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in {"VmRSS", "VmHWM"}:
                fields[name] = int(value.split()[0]) // 1024
        return fields

    async def stop(self) -> None:
        """Stop the service, then delete the run's topics (the documents are measured after)."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 60)
        await delete_topics(KAFKA, prefix=self.prefix)


async def wait_applied(
    service: Service, count: int, *, samples: list[tuple[int, int]] | None = None
) -> float:
    started = time.perf_counter()
    last = -1
    while True:
        counters = await service.get("/metrics")
        done = (
            counters.get("sync_applied", 0) + counters.get("sync_stale", 0) + counters.get("sync_failed", 0)
        )
        if samples is not None:
            samples.append((done, service.memory()["VmRSS"]))
        if done >= count:
            if counters.get("sync_failed", 0):
                raise SystemExit(f"{counters['sync_failed']} sync items failed")
            return time.perf_counter() - started
        if done != last and done // 50000 != last // 50000:
            log(f"  {done}/{count} applied, {time.perf_counter() - started:.0f}s")
        last = done
        await asyncio.sleep(1.0 if samples is not None else 0.05)


async def raw_ceiling(mongo: AsyncMongoClient[dict[str, Any]], source: str) -> tuple[list[float], int]:
    """Write the documents the service wrote, straight, in the service's batch size; RAW_RUNS times
    (one run swings by a third on a shared machine)."""
    collections = ["contacts", "contact_addresses", "contact_list", "crm_sync_state", "processed_commands"]
    docs = {name: await mongo[source][name].find({}).to_list() for name in collections}
    target = f"{source}_raw"
    runs = []
    for _ in range(RAW_RUNS):
        await mongo.drop_database(target)
        # The same store means the same indexes: the service's writes keep them up to date too.
        await ensure_schema(mongo[target])
        started = time.perf_counter()
        for name in collections:
            rows = docs[name]
            for i in range(0, len(rows), BATCH):
                await mongo[target][name].insert_many(rows[i : i + BATCH], ordered=False)
        runs.append(time.perf_counter() - started)
    await mongo.drop_database(target)
    return runs, sum(len(v) for v in docs.values())


def versus_raw(count: int, elapsed: float, raw_runs: list[float], raw_docs: int) -> dict[str, Any]:
    """The service's rate for ``count`` contacts next to the raw ceiling's (median run), and the target."""
    raw_seconds = statistics.median(raw_runs)
    service_rate, raw_rate = count / elapsed, count / raw_seconds
    return {
        "service_seconds": round(elapsed, 2),
        "service_contacts_per_second": round(service_rate, 1),
        "raw_documents": raw_docs,
        "raw_with_service_indexes": True,
        "raw_seconds": round(raw_seconds, 2),
        "raw_seconds_runs": [round(s, 2) for s in raw_runs],
        "raw_contacts_per_second": round(raw_rate, 1),
        "ratio_to_raw": round(service_rate / raw_rate, 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": service_rate / raw_rate >= TARGET_RATIO,
    }


async def bench_sync(mongo: AsyncMongoClient[dict[str, Any]], count: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    prefix, database, customer = f"bs{tag}.", f"bench_sync_{tag}", f"cust-{tag}"
    log(f"sync: producing {count} messages")
    produce_seconds = await produce(prefix, customer, count)
    service = Service(prefix, database)
    startup = await service.start()
    try:
        log("sync: service up, ingesting")
        elapsed = await wait_applied(service, count)
        memory = service.memory()
    finally:
        await service.stop()
    raw_runs, raw_docs = await raw_ceiling(mongo, database)
    contacts = await mongo[database]["contacts"].count_documents({})
    await mongo.drop_database(database)
    return {
        "messages": count,
        "contacts_written": contacts,
        "produce_seconds": round(produce_seconds, 2),
        "service_startup_seconds": round(startup, 2),
        **versus_raw(count, elapsed, raw_runs, raw_docs),
        "service_rss_mb_at_end": memory["VmRSS"],
        "service_peak_rss_mb": memory["VmHWM"],
    }


async def bench_bulk(mongo: AsyncMongoClient[dict[str, Any]], count: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    prefix, database, customer = f"bb{tag}.", f"bench_bulk_{tag}", f"cust-{tag}"
    service = Service(prefix, database)
    await service.start()
    try:
        async with ContactClient(KAFKA, topic_prefix=prefix) as client:
            log(f"bulk: {count} contacts in commands of 1000")
            commands = [
                c.BulkCreateContacts(
                    command_id=f"bulk-{start}",
                    customer_id=customer,
                    contacts=[
                        sync_message(customer, i)["contact"] | {"external_id": f"x-{i}"}
                        for i in range(start, min(count, start + 1000))
                    ],
                )
                for start in range(0, count, 1000)
            ]
            started = time.perf_counter()
            replies = await asyncio.gather(*(client.bulk_create(cmd, timeout=600) for cmd in commands))
            elapsed = time.perf_counter() - started
            for command, reply in zip(commands, replies, strict=True):
                assert reply.ok and reply.created == len(command.contacts), reply.errors[:3]
    finally:
        await service.stop()
    raw_runs, raw_docs = await raw_ceiling(mongo, database)
    await mongo.drop_database(database)
    return {"contacts": count, **versus_raw(count, elapsed, raw_runs, raw_docs)}


MEMORY_RUN_DIRECTORY = os.environ.get("LOOKUP_DIRECTORY", "false")
"""The memory run's LOOKUP_DIRECTORY: off unless the environment says otherwise."""


async def bench_memory(mongo: AsyncMongoClient[dict[str, Any]], count: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    prefix, database, customer = f"bm{tag}.", f"bench_mem_{tag}", f"cust-{tag}"
    log(f"memory: producing {count} messages")
    await produce(prefix, customer, count)
    # The ingestion path alone: the caller directory (on by default, for lookups) holds about
    # 1.2 KB per contact by design, so with it RSS grows with the contacts stored, not flat.
    service = Service(prefix, database, LOOKUP_DIRECTORY=MEMORY_RUN_DIRECTORY)
    await service.start()
    samples: list[tuple[int, int]] = []
    try:
        log("memory: ingesting")
        elapsed = await wait_applied(service, count, samples=samples)
        memory = service.memory()
    finally:
        await service.stop()
    await mongo.drop_database(database)

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


async def main(args: argparse.Namespace) -> None:
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGODB)
    result: dict[str, Any] = {
        "environment": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kafka": KAFKA,
            "store": MONGODB,
            "batch_size": BATCH,
            "event_loop": args.loop,
        }
    }
    try:
        if args.sync:
            result["sync_upserts"] = await bench_sync(mongo, args.sync)
        if args.bulk:
            result["bulk_create"] = await bench_bulk(mongo, args.bulk)
        if args.memory:
            result["memory"] = await bench_memory(mongo, args.memory)
    finally:
        await mongo.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    arguments = parse_args()
    run_on(arguments.loop, main(arguments))
