"""Caller-identity lookup latency over Kafka request/reply, against two baselines on the same stack.

What is measured, per store size (contacts loaded) and per request rate:

- ``lookup``: ``ContactClient.lookup_phone`` against the real service, run as its own process
  (the ``contact-service`` console script, as in production) on the real broker and store. Each
  reply must be ok and name the contact that holds the number; anything else counts as ``wrong``.
- ``echo``: the same client machinery (``ContactClient.request_raw``, same request bytes and headers)
  against a bare aiokafka responder, in a process of its own too, that produces each request's bytes
  back to its ``reply_to`` topic with the same ``correlation_id``: the cost of Kafka request/reply
  alone.
- ``store_read``: one bare point read, ``find_one({"_id": claim_id})`` on the claims collection of
  the same store, through the service's own client: the cost of one store round trip.
- ``resolve``: the store half of a lookup as the service does it (``addresses.resolve``: claim read,
  then contact read and decode), without Kafka. Not part of the targets; it shows where time goes.

Load is open loop: request ``i`` is fired at ``t0 + i / rate`` whatever is still outstanding, and its
latency runs from that scheduled time to the reply, so a slow system cannot slow the load down and
hide its own queueing (no coordinated omission). Each point gets ~1 s of warm-up at the same rate that
is not measured. Percentiles are nearest-rank over the successful calls; timeouts (5 s, for store
calls too), errors and wrong answers are counted apart. Each point also reports the cores kept busy
during it: by the whole machine, by this process (client, store baselines and driver share its
event loop), by the service's process and by the echo responder's. On a small machine the CPU runs
out before Kafka or the store do. Other work on the machine skews everything: before each point the
run waits (up to ``--quiet-wait`` seconds) for the machine to go quiet, and records how busy it was
and with what.

The service is started after the load, as after a restart: its caller directory loads the contacts
from the store, and the run waits until ``/metrics`` shows it holding them all.

Contacts are written straight into the store (100,000 through commands would take far too long),
built by the service's own code (``tests/benchmarks/stored.py``: ``build_contact`` and
``created_outcome`` as ``create_contact`` does, ``contact_to_doc``, the claim documents ``claim``
inserts and the listing entry; the listing is then marked complete). Each contact has one phone number
(``+1555`` and 7 digits, unique) and one email. The command log is not written: lookups never read it.
Before measuring, sample lookups (first, middle, last, one by email) must return exactly what
``contact_from_doc`` makes of the stored document.

Targets, per size and rate: ``lookup_p99 / (echo_p99 + store_read_p99) <= 1.5``; per rate:
``lookup_p50 at the largest size / lookup_p50 at the smallest size <= 1.3``.

Run (local stack: ``deploy/local/stack.sh start``; endpoints from ``KAFKA_BOOTSTRAP_SERVERS`` and
``MONGODB_URL``, defaulting to 127.0.0.1:9092 and mongodb://127.0.0.1:27017/)::

    PYTHONPATH=. .cache/venv/bin/python -m tests.benchmarks.bench_lookup \\
        [--sizes 1000 100000] [--rates 200 1000] [--seconds 10] [--quiet-wait 10]

One JSON document goes to stdout; progress and logs go to stderr.
"""

import argparse
import asyncio
import contextlib
import gc
import importlib.metadata
import json
import logging
import math
import os
import platform
import random
import signal
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from contracts import headers
from contracts import queries as q
from contracts.client import ContactClient, RequestTimeout
from service.adapters.mongo import (
    ADDRESSES,
    CONTACT_LIST,
    CONTACTS,
    Doc,
    MongoAddressBook,
    make_client,
    mark_listed,
)
from service.bootstrap import UtcClock
from service.config import Settings
from service.domain.model import Address
from service.service_layer import mapping
from service.service_layer.addresses import resolve
from service.service_layer.context import Services
from tests.benchmarks.bench_sync import Service, add_loop_option, run_on
from tests.benchmarks.stored import created_docs, merged
from tests.conftest import Endpoints, store_services

log = logging.getLogger("bench_lookup")

CUSTOMER = "cust-bench"
CHUNK = 1000
WARMUP_SECONDS = 1.0
"""Unmeasured calls before each slice."""
WARMUP_CHUNK_SECONDS = 5.0
TIMEOUT_SECONDS = 5.0
ECHO_TOPIC = "bench.echo.v1"
ECHO_PARTITIONS = 3
"""As many as the service's lookup topic (its TOPIC_PARTITIONS default)."""
P99_TARGET = 1.5
SCALING_TARGET = 1.3
QUIET_CORES = 0.3
"""Idle machine load (cores) above which a point is flagged: someone else is using the machine."""


def phone(i: int) -> str:
    return f"+1555{i:07d}"


def email(i: int) -> str:
    return f"caller{i}@example.com"


def command_id(i: int) -> str:
    return f"bench-load-{i}"


def contact_id(i: int) -> str:
    """The id ``create_contact`` derives for the command that created contact ``i``."""
    return mapping.derived_id("contact", CUSTOMER, command_id(i))


def claim_id(address: Address) -> str:
    return MongoAddressBook._id(CUSTOMER, address)


# --- statistics ---


def machine_cpu_seconds() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot (Linux), or None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / ticks, sum(values) / ticks


@dataclass
class CpuMeter:
    """Cores kept busy, by the whole machine and by this process, between start() and stop()."""

    wall: float = 0.0
    process: float = 0.0
    machine: tuple[float, float] | None = None

    def start(self) -> "CpuMeter":
        self.wall, self.process, self.machine = (
            time.perf_counter(),
            time.process_time(),
            machine_cpu_seconds(),
        )
        return self

    def stop(self) -> dict[str, float | None]:
        wall = time.perf_counter() - self.wall
        now = machine_cpu_seconds()
        machine = None if now is None or self.machine is None else (now[0] - self.machine[0]) / wall
        return {
            "machine_busy_cores": None if machine is None else round(machine, 2),
            "this_process_cores": round((time.process_time() - self.process) / wall, 2),
        }


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest rank: the smallest value with at least ``p`` percent of the values at or below it."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Run:
    """One measured point: latencies (ms) of the successful calls and what went wrong with the rest."""

    rate: float
    seconds: float
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    timeouts: int = 0
    errors: int = 0
    wrong: int = 0
    max_send_lag_ms: float = 0.0
    elapsed: float = 0.0

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)

        def r(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 3)

        return {
            "sent": self.sent,
            "count": len(ordered),
            "errors": self.timeouts + self.errors + self.wrong,
            "timeouts": self.timeouts,
            "failed": self.errors,
            "wrong": self.wrong,
            "p50_ms": r(percentile(ordered, 50)),
            "p90_ms": r(percentile(ordered, 90)),
            "p99_ms": r(percentile(ordered, 99)),
            "max_ms": r(ordered[-1] if ordered else math.nan),
            "mean_ms": r(statistics.fmean(ordered) if ordered else math.nan),
            "achieved_rate": round(len(ordered) / self.elapsed, 1) if self.elapsed else None,
            "max_send_lag_ms": round(self.max_send_lag_ms, 3),
        }


Call = Callable[[int], Awaitable[bool]]
"""One request for item ``i``: True when the answer is right, False when it is wrong."""


async def open_loop(call: Call, *, rate: float, seconds: float, items: int, seed: int) -> Run:
    """Fire ``rate * seconds`` calls on a fixed schedule, each as its own task, and wait for all."""
    rng = random.Random(seed)
    run = Run(rate=rate, seconds=seconds, sent=int(rate * seconds))
    failures_logged = 0

    async def one(i: int, scheduled: float) -> None:
        nonlocal failures_logged
        try:
            right = await call(i)
        except RequestTimeout:
            run.timeouts += 1
            return
        except Exception as exc:
            run.errors += 1
            if failures_logged < 5:
                failures_logged += 1
                log.warning("call failed: %r", exc)
            return
        if right:
            run.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
        else:
            run.wrong += 1

    # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
    tasks: list[asyncio.Task[None]] = []
    t0 = time.perf_counter() + 0.01
    for n in range(run.sent):
        scheduled = t0 + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        run.max_send_lag_ms = max(run.max_send_lag_ms, (time.perf_counter() - scheduled) * 1000)
        tasks.append(asyncio.create_task(one(rng.randrange(items), scheduled)))
    await asyncio.gather(*tasks)
    run.elapsed = time.perf_counter() - t0
    return run


def process_cpu_seconds() -> dict[int, tuple[str, float]]:
    """pid -> (command name, CPU seconds so far) for every process we may read (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    table: dict[int, tuple[str, float]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{entry.name}/stat") as f:
                head, _, tail = f.read().rpartition(")")
                fields = tail.split()
                table[int(entry.name)] = (head.partition("(")[2], (int(fields[11]) + int(fields[12])) / ticks)
    return table


async def idle_load(seconds: float) -> tuple[float | None, list[str]]:
    """Cores the machine keeps busy while this process does nothing (other people's work), and the
    processes keeping them busy."""
    before, meter = process_cpu_seconds(), CpuMeter().start()
    await asyncio.sleep(seconds)
    busy, after = meter.stop()["machine_busy_cores"], process_cpu_seconds()
    used = {
        pid: (name, (spent - before.get(pid, (name, 0.0))[1]) / seconds)
        for pid, (name, spent) in after.items()
    }
    top = sorted(used.items(), key=lambda item: -item[1][1])[:3]
    return busy, [f"{name}[{pid}]={cores:.2f}" for pid, (name, cores) in top if cores >= 0.05]


async def wait_quiet(limit: float) -> tuple[float | None, list[str]]:
    """Wait (up to ``limit`` seconds) until the machine is quiet; the last idle load seen."""
    deadline = time.monotonic() + limit
    while True:
        busy, top = await idle_load(1.0)
        if busy is None or busy <= QUIET_CORES or time.monotonic() >= deadline:
            return busy, top


async def measure(
    name: str,
    call: Call,
    *,
    rate: float,
    seconds: float,
    items: int,
    quiet_wait: float,
    pids: dict[str, int],
    seed: int,
) -> "Slice":
    background, busiest = await wait_quiet(quiet_wait)
    if background is not None and background > QUIET_CORES:
        log.warning("  %s: the machine is busy with other work (%.2f cores: %s)", name, background, busiest)
    await open_loop(call, rate=rate, seconds=WARMUP_SECONDS, items=items, seed=-1)
    meter, before = CpuMeter().start(), process_cpu_seconds()
    run = await open_loop(call, rate=rate, seconds=seconds, items=items, seed=seed)
    after, wall = process_cpu_seconds(), time.perf_counter() - meter.wall
    cpu: dict[str, Any] = meter.stop() | {
        f"{role}_process_cores": round((after[pid][1] - before[pid][1]) / wall, 2)
        for role, pid in pids.items()
        if pid in before and pid in after
    }
    cpu |= {"machine_busy_cores_idle_before": background, "busiest_idle_before": busiest}
    summary = run.summary() | {"cpu": cpu}
    log.info(
        "  %-10s rate=%-6g count=%-6d errors=%-4d p50=%.2fms p99=%.2fms mean=%.2fms max lag=%.1fms cpu=%s",
        name,
        rate,
        summary["count"],
        summary["errors"],
        summary["p50_ms"] or math.nan,
        summary["p99_ms"] or math.nan,
        summary["mean_ms"] or math.nan,
        summary["max_send_lag_ms"],
        {k: v for k, v in cpu.items() if k != "busiest_idle_before"},
    )
    await asyncio.sleep(0.5)  # let stragglers (late replies, acks) settle before the next point
    return Slice(run, cpu)


@dataclass
class Slice:
    """One measured slice of a point: its calls and the cores busy meanwhile."""

    run: Run
    cpu: dict[str, Any]


def pooled(slices: Sequence[Slice]) -> dict[str, Any]:
    """One summary over every call of ``slices`` (percentiles over the pooled latencies), the
    cores averaged over them, and each slice's own percentiles to show the spread."""
    runs = [s.run for s in slices]
    run = Run(
        rate=runs[0].rate,
        seconds=sum(r.seconds for r in runs),
        sent=sum(r.sent for r in runs),
        latencies_ms=[x for r in runs for x in r.latencies_ms],
        timeouts=sum(r.timeouts for r in runs),
        errors=sum(r.errors for r in runs),
        wrong=sum(r.wrong for r in runs),
        max_send_lag_ms=max(r.max_send_lag_ms for r in runs),
        elapsed=sum(r.elapsed for r in runs),
    )
    cpu: dict[str, Any] = {}
    for key in slices[0].cpu:
        if key == "busiest_idle_before":
            continue
        values = [s.cpu.get(key) for s in slices]
        numbers = [v for v in values if isinstance(v, int | float)]
        if key == "machine_busy_cores_idle_before":
            cpu[key] = max(numbers, default=None)  # the worst slice decides whether it was quiet
        else:
            cpu[key] = round(statistics.fmean(numbers), 2) if numbers else None
    cpu["busiest_idle_before"] = max(
        slices, key=lambda s: s.cpu["machine_busy_cores_idle_before"] or 0.0
    ).cpu["busiest_idle_before"]
    each = [
        {k: summary[k] for k in ("count", "errors", "p50_ms", "p99_ms")} for summary in map(Run.summary, runs)
    ]
    return run.summary() | {"cpu": cpu, "slices": each}


# --- loading ---


def build_docs(svc: Services, start: int, stop: int) -> dict[str, list[Doc]]:
    """Documents of contacts ``start..stop-1``, as ``create_contact`` writes them."""
    return merged(
        [
            created_docs(
                svc,
                customer_id=CUSTOMER,
                command_id=command_id(i),
                contact_id=contact_id(i),
                contact={
                    "first_name": "Caller",
                    "last_name": str(i),
                    "company": "Bench Inc.",
                    "source": "import",
                    "phone_numbers": [{"number": phone(i), "type": "mobile", "is_primary": True}],
                    "emails": [{"address": email(i), "type": "work", "is_primary": True}],
                },
            )
            for i in range(start, stop)
        ]
    )


async def load(db: Any, svc: Services, size: int) -> dict[str, Any]:
    """Write ``size`` contacts in chunks; the next chunk is built (in a thread) while one is inserted."""
    build_seconds = insert_seconds = 0.0

    inserted = [0, 0]

    async def insert(docs: dict[str, list[Doc]]) -> None:
        # A failed insert raises (BulkWriteError); the counts double-check nothing went missing.
        nonlocal insert_seconds
        began = time.perf_counter()
        inserted[0] += len((await db[CONTACTS].insert_many(docs[CONTACTS], ordered=False)).inserted_ids)
        inserted[1] += len((await db[ADDRESSES].insert_many(docs[ADDRESSES], ordered=False)).inserted_ids)
        await db[CONTACT_LIST].insert_many(docs[CONTACT_LIST], ordered=False)
        insert_seconds += time.perf_counter() - began

    began = time.perf_counter()
    pending: asyncio.Task[None] | None = None
    for start in range(0, size, CHUNK):
        t = time.perf_counter()
        docs = await asyncio.to_thread(build_docs, svc, start, min(size, start + CHUNK))
        build_seconds += time.perf_counter() - t
        if pending is not None:
            await pending
        pending = asyncio.create_task(insert(docs))
        if start and start % 20_000 == 0:
            log.info("  loaded %d / %d", start, size)
    if pending is not None:
        await pending
    await mark_listed(db)
    total = time.perf_counter() - began
    # Not count_documents: FerretDB answers it with a full scan (about 2 minutes at 100,000 contacts).
    if inserted != [size, 2 * size]:
        raise RuntimeError(f"inserted {inserted} (contacts, claims), wanted {[size, 2 * size]}")
    log.info("  loaded %d contacts in %.1fs", size, total)
    return {
        "contacts": size,
        "claims": 2 * size,
        "seconds": round(total, 2),
        "contacts_per_second": round(size / total, 1),
        "build_seconds_in_thread": round(build_seconds, 2),
        "insert_seconds": round(insert_seconds, 2),
    }


# --- the bare echo responder ---


class EchoResponder:
    """A group consumer answering each request with its own bytes, on its reply_to topic, with its
    correlation_id: Kafka request/reply with no work in between."""

    def __init__(self, bootstrap: str, topic: str, *, partitions: int) -> None:
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "EchoResponder":
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="bench-echo-admin")
        await admin.start()
        try:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(self.topic, self.partitions, 1)])
        finally:
            await admin.close()
        # Same producer settings as the service's Replier: leader ack only, no linger.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, client_id="bench-echo", acks=1, linger_ms=0
        )
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=f"{self.topic}.echo",
            client_id="bench-echo",
            auto_offset_reset="latest",
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._serve(), name="bench-echo")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def _serve(self) -> None:
        assert self._consumer is not None and self._producer is not None
        async for record in self._consumer:
            found = dict(record.headers or ())
            reply_to, correlation = found.get(headers.REPLY_TO), found.get(headers.CORRELATION_ID)
            if reply_to and correlation is not None:
                # send() only enqueues; the ack is not waited for, so one slow ack blocks nothing.
                ack = await self._producer.send(
                    reply_to.decode(),
                    record.value,
                    headers=[("content-type", b"application/json"), (headers.CORRELATION_ID, correlation)],
                )
                ack.add_done_callback(_log_failure)


def _log_failure(ack: "asyncio.Future[Any]") -> None:
    if not ack.cancelled() and ack.exception() is not None:
        log.warning("echo reply failed: %r", ack.exception())


# --- one size ---


@contextlib.asynccontextmanager
async def bounded() -> AsyncIterator[None]:
    """The client's timeout, for calls that have none of their own: late counts as a timeout."""
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            yield
    except TimeoutError as exc:
        raise RequestTimeout(f"no answer within {TIMEOUT_SECONDS}s") from exc


async def until_answered(name: str, call: Callable[[], Awaitable[Any]], *, attempts: int = 30) -> Any:
    """The first answer to ``call``; the consumers may still be joining their groups at first."""
    for attempt in range(attempts):
        try:
            return await call()
        except RequestTimeout:
            log.info("  %s: no answer yet (attempt %d)", name, attempt + 1)
    raise RuntimeError(f"{name}: never answered")


async def verify(svc: Services, client: ContactClient, size: int) -> None:
    """Sample lookups return exactly what contact_from_doc makes of the stored documents."""
    first = await until_answered("lookup", lambda: client.lookup_phone(CUSTOMER, phone(0), timeout=2))
    for i in sorted({0, size // 2, size - 1}):
        reply = first if i == 0 else await client.lookup_phone(CUSTOMER, phone(i), timeout=5)
        stored = await svc.contacts.get(customer_id=CUSTOMER, contact_id=contact_id(i))
        assert stored is not None, f"contact {i} not stored"
        expected = mapping.contact_to_wire(stored.contact)
        assert reply.ok and reply.result == expected, f"lookup of {phone(i)} gave {reply}"
        assert expected.id == contact_id(i) and expected.phone_numbers[0].number_e164 == phone(i)
    by_email = await client.lookup_email(CUSTOMER, email(size - 1).upper(), timeout=5)
    assert by_email.ok and by_email.result is not None and by_email.result.id == contact_id(size - 1)


class _NoEvents:
    """Loading and the store baselines publish nothing."""

    async def publish(self, *, events: Sequence[dict[str, Any]]) -> None:
        raise AssertionError("the benchmark's own store access never publishes")


class EchoProcess:
    """The bare echo responder in a process of its own, as the service is in its own."""

    def __init__(self, topic: str, partitions: int) -> None:
        self.topic, self.partitions = topic, partitions
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> "EchoProcess":
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.benchmarks.bench_lookup",
            "--echo-topic",
            self.topic,
            "--echo-partitions",
            str(self.partitions),
            "--loop",
            os.environ.get("EVENT_LOOP", "asyncio"),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 30)


async def serve_echo(topic: str, partitions: int) -> None:
    """The echo responder's process: answer until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    async with EchoResponder(bootstrap, topic, partitions=partitions):
        gc.freeze()  # as the service and the driver do
        await stop.wait()


async def warm_up(calls: dict[str, Call], *, rate: float, seconds: float, items: int) -> list[dict[str, Any]]:
    """Each of ``calls`` in turn, ``WARMUP_CHUNK_SECONDS`` at a time, for ``seconds``; unmeasured.

    A freshly started broker JVM spends its first half minute or more under load compiling its
    hot paths (the C2 compiler thread measured at 0.3-0.8 of this machine's 2 cores), and that
    fell on whichever slices came first: the first lookup slice after a stack start gave p50
    26 ms against 7-8 ms for the five after it. Each chunk's p50/p99 goes into the JSON.
    """
    chunks: list[dict[str, Any]] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for name, call in calls.items():
            summary = (
                await open_loop(call, rate=rate, seconds=WARMUP_CHUNK_SECONDS, items=items, seed=-2)
            ).summary()
            chunks.append({"name": name} | {k: summary[k] for k in ("count", "errors", "p50_ms", "p99_ms")})
            log.info(
                "  warm-up %-6s rate=%-6g p50=%sms p99=%sms", name, rate, summary["p50_ms"], summary["p99_ms"]
            )
    return chunks


async def bench_size(
    endpoints: Endpoints,
    size: int,
    rates: Sequence[float],
    *,
    seconds: float,
    quiet_wait: float,
    rounds: int,
    warmup: float,
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:10]
    prefix, database = f"bench{tag}.", f"bench_{tag}"
    log.info("size %d: service on topics %s*, database %s", size, prefix, database)
    service = Service(prefix, database)
    mongo = make_client(endpoints.mongodb)
    db = mongo[database]
    # The store half of the service, for loading and the resolve baseline; never the broker.
    svc = store_services(db, clock=UtcClock(), events=_NoEvents())
    try:
        loading = await load(db, svc, size)
        # Started after the load, as after a restart: the caller directory loads from the store.
        await service.start()
        loading["directory"] = await directory_loaded(service, size)
        claims = db[ADDRESSES]
        phone_claims = [claim_id(Address("phone", phone(i))) for i in range(size)]
        ids = [contact_id(i) for i in range(size)]
        probe = q.LookupContact(customer_id=CUSTOMER, phone=phone(0)).model_dump_json().encode()
        async with (
            ContactClient(endpoints.kafka, topic_prefix=prefix, client_id="bench-client") as client,
            EchoProcess(prefix + ECHO_TOPIC, partitions=ECHO_PARTITIONS) as echo_process,
        ):
            await verify(svc, client, size)
            await until_answered(
                "echo", lambda: client.request_raw(ECHO_TOPIC, probe, key=phone(0), timeout=2)
            )
            assert service.process is not None and echo_process.process is not None
            pids = {"service": service.process.pid, "echo_responder": echo_process.process.pid}

            async def lookup(i: int) -> bool:
                reply = await client.lookup_phone(CUSTOMER, phone(i), timeout=TIMEOUT_SECONDS)
                return reply.ok and reply.result is not None and reply.result.id == ids[i]

            async def echo(i: int) -> bool:
                # Same client-side work as lookup_phone: encode the query, request, parse the answer.
                body = q.LookupContact(customer_id=CUSTOMER, phone=phone(i)).model_dump_json().encode()
                raw = await client.request_raw(ECHO_TOPIC, body, key=phone(i), timeout=TIMEOUT_SECONDS)
                return q.LookupContact.model_validate_json(raw).phone == phone(i)

            async def store_read(i: int) -> bool:
                async with bounded():
                    doc = await claims.find_one({"_id": phone_claims[i]})
                return doc is not None and doc["contact_id"] == ids[i]

            async def resolve_only(i: int) -> bool:
                async with bounded():
                    contact = await resolve(Address("phone", phone(i)), customer_id=CUSTOMER, svc=svc)
                return contact is not None and contact.id == ids[i]

            # Out of the collector's sight: a full collection over this process's ~90,000 tracked
            # objects (imports, the load's leftovers) took 80-110 ms here, stalling every call in
            # flight, whichever of the four runs it fell in. The service does the same (bootstrap).
            gc.collect()
            gc.freeze()
            warmed = await warm_up(
                {"lookup": lookup, "echo": echo}, rate=max(rates), seconds=warmup, items=size
            )
            points: dict[str, Any] = {}
            for rate in rates:
                log.info(" size %d, %g/s", size, rate)
                # The target and its baselines in interleaved slices, so drift on the shared
                # machine (other work, the broker's housekeeping) falls on all three alike.
                slices: dict[str, list[Slice]] = {name: [] for name in ("lookup", "echo", "store_read")}
                for round_ in range(rounds):
                    for name, call in (("lookup", lookup), ("echo", echo), ("store_read", store_read)):
                        slices[name].append(
                            await measure(
                                name,
                                call,
                                rate=rate,
                                seconds=seconds,
                                items=size,
                                quiet_wait=quiet_wait,
                                pids=pids,
                                seed=int(rate) * 100 + round_,
                            )
                        )
                point: dict[str, Any] = {name: pooled(runs) for name, runs in slices.items()}
                # Not a target, and at 1,000/s past the store's capacity: measured once, last.
                point["resolve"] = pooled(
                    [
                        await measure(
                            "resolve",
                            resolve_only,
                            rate=rate,
                            seconds=seconds,
                            items=size,
                            quiet_wait=quiet_wait,
                            pids=pids,
                            seed=int(rate),
                        )
                    ]
                )
                point["ratio_lookup_p99_to_echo_plus_read_p99"] = _ratio(
                    point["lookup"]["p99_ms"], _sum(point["echo"]["p99_ms"], point["store_read"]["p99_ms"])
                )
                # Percentiles cover successful calls only: with failures, no target counts as met.
                point["lookup_saturated"] = _saturated(point["lookup"], rate)
                point["meets_p99_target"] = not point["lookup"]["errors"] and _at_most(
                    point["ratio_lookup_p99_to_echo_plus_read_p99"], P99_TARGET
                )
                points[_label(rate)] = point
        counters = await service.get("/metrics")
    finally:
        await service.stop()
        await mongo.drop_database(database)
        await mongo.close()
    return {"load": loading, "warmup": warmed, "rates": points, "service_counters": counters}


async def directory_loaded(service: Service, size: int, *, limit: float = 600.0) -> dict[str, Any]:
    """Wait until the service's caller directory holds the ``size`` contacts loaded (if it has one)."""
    deadline = time.monotonic() + limit
    while True:
        metrics = await service.get("/metrics")
        if "directory_ready" not in metrics:
            return {"enabled": False}
        if metrics["directory_ready"] and metrics["directory_contacts"] >= size:
            return {
                "enabled": True,
                "contacts": metrics["directory_contacts"],
                "load_ms": metrics["directory_load_ms"],
            }
        if time.monotonic() > deadline:
            raise RuntimeError(f"caller directory not loaded after {limit}s: {metrics}")
        await asyncio.sleep(0.2)


def _saturated(summary: dict[str, Any], rate: float) -> bool:
    """Failures, or answers arriving well below the offered rate: past capacity, queueing."""
    achieved = summary["achieved_rate"] or 0.0
    return bool(summary["errors"]) or achieved < 0.95 * rate


def _sum(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def _at_most(value: float | None, target: float) -> bool:
    return value is not None and value <= target


def _label(value: float) -> str:
    return f"{value:g}"


# --- the whole run ---


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def environment(endpoints: Endpoints) -> dict[str, Any]:
    from pymongo import AsyncMongoClient

    mongo: AsyncMongoClient[Doc] = AsyncMongoClient(endpoints.mongodb, serverSelectionTimeoutMS=5000)
    try:
        info = await mongo.admin.command("buildInfo")
    finally:
        await mongo.close()
    meter = CpuMeter().start()
    await asyncio.sleep(2)
    background = meter.stop()["machine_busy_cores"]
    versions = {}
    for package in ("aiokafka", "faststream", "pymongo", "pydantic"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "event_loop": os.environ.get("EVENT_LOOP"),
        "packages": versions,
        "kafka_bootstrap_servers": endpoints.kafka,
        "mongodb_url": _without_credentials(endpoints.mongodb),
        "store_version": info.get("version"),
        "store_ferretdb_version": info.get("ferretdbVersion"),
        "machine_busy_cores_before_run": background,
        "note": (
            "the service (contact-service) and the echo responder run as processes of their own; "
            "the client, the store baselines and the load driver share this one"
        ),
    }


async def main(
    sizes: Sequence[int],
    rates: Sequence[float],
    *,
    seconds: float,
    quiet_wait: float,
    rounds: int,
    warmup: float,
) -> dict[str, Any]:
    began = time.perf_counter()
    endpoints = Endpoints(
        os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/"),
        "bench",
    )
    report: dict[str, Any] = {
        "environment": await environment(endpoints),
        "config": {
            "sizes": list(sizes),
            "rates_per_second": list(rates),
            "seconds_per_slice": seconds,
            "slices_per_point": rounds,
            "quiet_wait_seconds": quiet_wait,
            "quiet_below_busy_cores": QUIET_CORES,
            "warmup_seconds_per_slice": WARMUP_SECONDS,
            "warmup_seconds_per_size": warmup,
            "request_timeout_seconds": TIMEOUT_SECONDS,
            "lookup_workers": Settings.model_fields["lookup_workers"].default,
            "percentiles": (
                "nearest rank, over the successful calls of all of a point's slices; "
                "latency from scheduled send time"
            ),
        },
        "targets": {
            "lookup_p99 / (echo_p99 + store_read_p99)": f"<= {P99_TARGET}",
            "lookup_p50 at largest size / at smallest size": f"<= {SCALING_TARGET}",
        },
    }
    results = {
        str(size): await bench_size(
            endpoints, size, rates, seconds=seconds, quiet_wait=quiet_wait, rounds=rounds, warmup=warmup
        )
        for size in sizes
    }
    report["results"] = results
    small, large = str(min(sizes)), str(max(sizes))
    scaling: dict[str, Any] = {}
    for rate in map(_label, rates):
        low, high = results[small]["rates"][rate]["lookup"], results[large]["rates"][rate]["lookup"]
        ratio = _ratio(high["p50_ms"], low["p50_ms"])
        failed = low["errors"] + high["errors"]
        scaling[rate] = {
            f"lookup_p50_at_{small}_ms": low["p50_ms"],
            f"lookup_p50_at_{large}_ms": high["p50_ms"],
            f"ratio_p50_{large}_to_{small}": ratio,
            "lookup_errors": failed,
            "meets_target": not failed and _at_most(ratio, SCALING_TARGET),
        }
    report["scaling"] = scaling
    p99_met = all(p["meets_p99_target"] for r in results.values() for p in r["rates"].values())
    errors = sum(
        p[name]["errors"]
        for r in results.values()
        for p in r["rates"].values()
        for name in ("lookup", "echo")
    )
    idle = [
        p[name]["cpu"]["machine_busy_cores_idle_before"]
        for r in results.values()
        for p in r["rates"].values()
        for name in ("lookup", "echo", "store_read", "resolve")
    ]
    busiest = max((x for x in idle if x is not None), default=None)
    report["summary"] = {
        "max_idle_machine_busy_cores": busiest,
        "machine_was_quiet": busiest is not None and busiest <= QUIET_CORES,
        "p99_target_met_everywhere": p99_met,
        "scaling_target_met_everywhere": all(s["meets_target"] for s in scaling.values()),
        "lookup_and_echo_errors": errors,
        "all_targets_met": p99_met and all(s["meets_target"] for s in scaling.values()) and errors == 0,
    }
    report["runtime_seconds"] = round(time.perf_counter() - began, 1)
    return report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000], help="contacts loaded")
    parser.add_argument("--rates", type=float, nargs="+", default=[200, 1000], help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per slice")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="slices per point: lookup, echo and store_read measured in turn, this many times",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=60.0,
        help="per size, before its first point: seconds of lookups and echoes at the top rate, unmeasured",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=10.0,
        help="before each point, wait up to this long for other work on the machine to stop",
    )
    parser.add_argument("--echo-topic", help=argparse.SUPPRESS)  # the echo responder's own process
    parser.add_argument("--echo-partitions", type=int, default=ECHO_PARTITIONS, help=argparse.SUPPRESS)
    add_loop_option(parser)
    args = parser.parse_args(argv)
    if (
        min(args.sizes) < 1
        or min(args.rates) <= 0
        or args.seconds <= 0
        or args.quiet_wait < 0
        or args.warmup < 0
        or args.rounds < 1
    ):
        parser.error("sizes, rates, seconds and rounds must be positive; warmup and quiet-wait not negative")
    return args


def run(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.echo_topic:
        run_on(args.loop, serve_echo(args.echo_topic, args.echo_partitions))
        return
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    out = sys.stdout
    # Everything else printed meanwhile goes to stderr: FastStream's access log (two lines per
    # message, created while the service starts) writes to whatever sys.stdout is at that moment.
    with contextlib.redirect_stdout(sys.stderr):
        report = run_on(
            args.loop,
            main(
                args.sizes,
                args.rates,
                seconds=args.seconds,
                quiet_wait=args.quiet_wait,
                rounds=args.rounds,
                warmup=args.warmup,
            ),
        )
    json.dump(report, out, indent=2)
    out.write("\n")


if __name__ == "__main__":
    run()
