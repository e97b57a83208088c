"""Caller-identity lookup latency over Kafka request/reply, against two baselines on the same stack.

    PYTHONPATH=. .cache/venv/bin/python -m tests.benchmarks.bench_lookup \\
        [--sizes 1000 100000] [--rates 200 1000] [--seconds 10] [--rounds 3] [--warmup 60] \\
        [--quiet-wait 10] [--loop asyncio|uvloop]

What is measured, the targets and how to read them: tests/benchmarks/README.md. One JSON document
on stdout; progress and logs on stderr.
"""

import argparse
import asyncio
import gc
import logging
import time
from collections.abc import Sequence
from typing import Any

from contracts import queries as q
from contracts.client import ContactClient
from tests.benchmarks import report
from tests.benchmarks.echo import EchoProcess
from tests.benchmarks.load import ADDRESSES as CLAIMS
from tests.benchmarks.load import (
    ContactSet,
    Services,
    load,
    lookup_workers,
    make_client,
    resolve_phone,
    store_side,
    stored_wire,
)
from tests.benchmarks.machine import QUIET_CORES
from tests.benchmarks.openloop import (
    TIMEOUT_SECONDS,
    WARMUP_SECONDS,
    Call,
    Pace,
    Slice,
    bounded,
    measure,
    pooled,
    until_answered,
    warm_up,
)
from tests.benchmarks.process import KAFKA, MONGODB, Service, add_loop_option
from tests.benchmarks.stats import Json, added, at_most, label, ratio

log = logging.getLogger("bench_lookup")

CUSTOMER = "cust-bench"
ECHO_TOPIC = "bench.echo.v1"
ECHO_PARTITIONS = 3
"""As many as the service's lookup topic (its TOPIC_PARTITIONS default)."""
P99_TARGET = 1.5
SCALING_TARGET = 1.3
BASELINES = ("lookup", "echo", "store_read")
"""Measured in interleaved slices, so drift on the shared machine falls on all three alike."""


def phone(i: int) -> str:
    return f"+1555{i:07d}"


def email(i: int) -> str:
    return f"caller{i}@example.com"


CALLERS = ContactSet(
    CUSTOMER,
    "bench-load-",
    lambda i: {
        "first_name": "Caller",
        "last_name": str(i),
        "company": "Bench Inc.",
        "source": "import",
        "phone_numbers": [{"number": phone(i), "type": "mobile", "is_primary": True}],
        "emails": [{"address": email(i), "type": "work", "is_primary": True}],
    },
)


async def verify(svc: Services, client: ContactClient, size: int) -> None:
    """Sample lookups return exactly the stored contacts (as the service maps them), before anything
    is measured; the first may wait for the consumers to join."""
    first = await until_answered("lookup", lambda: client.lookup_phone(CUSTOMER, phone(0), timeout=2))
    for i in sorted({0, size // 2, size - 1}):
        reply = first if i == 0 else await client.lookup_phone(CUSTOMER, phone(i), timeout=5)
        expected = await stored_wire(svc, CUSTOMER, CALLERS.contact_id(i))
        assert expected is not None, f"contact {i} not stored"
        assert reply.ok and reply.result == expected, f"lookup of {phone(i)} gave {reply}"
        assert expected.id == CALLERS.contact_id(i) and expected.phone_numbers[0].number_e164 == phone(i)
    by_email = await client.lookup_email(CUSTOMER, email(size - 1).upper(), timeout=5)
    assert by_email.ok and by_email.result is not None and by_email.result.id == CALLERS.contact_id(size - 1)


def calls(client: ContactClient, svc: Services, db: Any, size: int) -> dict[str, Call]:
    """The target, its two baselines and the store half of a lookup, for contact number i."""
    ids = [CALLERS.contact_id(i) for i in range(size)]
    claims = [CALLERS.claim_id("phone", phone(i)) for i in range(size)]

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
            doc = await db[CLAIMS].find_one({"_id": claims[i]})
        return doc is not None and doc["contact_id"] == ids[i]

    async def resolve(i: int) -> bool:
        async with bounded():
            return await resolve_phone(svc, CUSTOMER, phone(i)) == ids[i]

    return {"lookup": lookup, "echo": echo, "store_read": store_read, "resolve": resolve}


async def bench_point(targets: dict[str, Call], pace: Pace, rounds: int) -> Json:
    """One size and rate: the target and baselines in ``rounds`` interleaved slices, then resolve."""
    slices: dict[str, list[Slice]] = {name: [] for name in BASELINES}
    for round_ in range(rounds):
        for name in BASELINES:
            slices[name].append(await measure(name, targets[name], pace, seed=int(pace.rate) * 100 + round_))
    point: Json = {name: pooled(runs) for name, runs in slices.items()}
    # Not a target, and at 1,000/s past the store's capacity: measured once, last.
    point["resolve"] = pooled([await measure("resolve", targets["resolve"], pace, seed=int(pace.rate))])
    lookup = point["lookup"]
    point["ratio_lookup_p99_to_echo_plus_read_p99"] = ratio(
        lookup["p99_ms"], added(point["echo"]["p99_ms"], point["store_read"]["p99_ms"])
    )
    # Failures, or answers arriving well below the offered rate: past capacity, queueing.
    point["lookup_saturated"] = bool(lookup["errors"]) or (lookup["achieved_rate"] or 0.0) < 0.95 * pace.rate
    # Percentiles cover successful calls only: with failures, no target counts as met.
    point["meets_p99_target"] = not lookup["errors"] and at_most(
        point["ratio_lookup_p99_to_echo_plus_read_p99"], P99_TARGET
    )
    return point


async def directory_loaded(service: Service, size: int, *, limit: float = 600.0) -> Json:
    """Wait until the service's caller directory holds the ``size`` contacts loaded (if it has one)."""
    deadline = time.monotonic() + limit
    while True:
        metrics = await service.get("/metrics")
        if "contact_directory_ready" not in metrics:
            return {"enabled": False}
        if metrics["contact_directory_ready"] and metrics["contact_directory_contacts"] >= size:
            return {
                "enabled": True,
                "contacts": int(metrics["contact_directory_contacts"]),
                "load_ms": int(metrics["contact_directory_load_seconds"] * 1000),
            }
        if time.monotonic() > deadline:
            raise RuntimeError(f"caller directory not loaded after {limit}s: {metrics}")
        await asyncio.sleep(0.2)


async def bench_size(size: int, args: argparse.Namespace) -> Json:
    service = Service.fresh("bench", "bench")
    log.info("size %d: service on topics %s*, database %s", size, service.prefix, service.database)
    mongo = make_client(MONGODB)
    db = mongo[service.database]
    svc = store_side(db)
    try:
        loading = await load(db, CALLERS, size, svc)
        # Started after the load, as after a restart: the caller directory loads from the store.
        await service.start()
        loading["directory"] = await directory_loaded(service, size)
        probe = q.LookupContact(customer_id=CUSTOMER, phone=phone(0)).model_dump_json().encode()
        async with (
            ContactClient(KAFKA, topic_prefix=service.prefix, client_id="bench-client") as client,
            EchoProcess(service.prefix + ECHO_TOPIC, partitions=ECHO_PARTITIONS) as echo,
        ):
            await verify(svc, client, size)
            await until_answered(
                "echo", lambda: client.request_raw(ECHO_TOPIC, probe, key=phone(0), timeout=2)
            )
            targets = calls(client, svc, db, size)
            # A full collection stalls every call in flight; the service freezes its heap too.
            gc.collect()
            gc.freeze()
            warmed = await warm_up(
                {"lookup": targets["lookup"], "echo": targets["echo"]},
                rate=max(args.rates),
                seconds=args.warmup,
                items=size,
            )
            pids = {"service": service.pid, "echo_responder": echo.pid}
            points = {}
            for rate in args.rates:
                log.info(" size %d, %g/s", size, rate)
                pace = Pace(rate, args.seconds, size, args.quiet_wait, pids)
                points[label(rate)] = await bench_point(targets, pace, args.rounds)
        counters = await service.get("/metrics")
    finally:
        await service.stop()
        await mongo.drop_database(service.database)
        await mongo.close()
    return {"load": loading, "warmup": warmed, "rates": points, "service_counters": counters}


def config(args: argparse.Namespace) -> Json:
    return {
        "sizes": list(args.sizes),
        "rates_per_second": list(args.rates),
        "seconds_per_slice": args.seconds,
        "slices_per_point": args.rounds,
        "quiet_wait_seconds": args.quiet_wait,
        "quiet_below_busy_cores": QUIET_CORES,
        "warmup_seconds_per_slice": WARMUP_SECONDS,
        "warmup_seconds_per_size": args.warmup,
        "request_timeout_seconds": TIMEOUT_SECONDS,
        "lookup_workers": lookup_workers(),
        "percentiles": (
            "nearest rank, over the successful calls of all of a point's slices; "
            "latency from scheduled send time"
        ),
    }


def scaling(results: dict[str, Json], sizes: Sequence[int], rates: Sequence[float]) -> Json:
    """Per rate: lookup p50 at the largest size against the smallest."""
    small, large = str(min(sizes)), str(max(sizes))
    out: Json = {}
    for rate in map(label, rates):
        low, high = results[small]["rates"][rate]["lookup"], results[large]["rates"][rate]["lookup"]
        p50_ratio, failed = ratio(high["p50_ms"], low["p50_ms"]), low["errors"] + high["errors"]
        out[rate] = {
            f"lookup_p50_at_{small}_ms": low["p50_ms"],
            f"lookup_p50_at_{large}_ms": high["p50_ms"],
            f"ratio_p50_{large}_to_{small}": p50_ratio,
            "lookup_errors": failed,
            "meets_target": not failed and at_most(p50_ratio, SCALING_TARGET),
        }
    return out


def summary(results: dict[str, Json], scaled: Json) -> Json:
    points = [p for r in results.values() for p in r["rates"].values()]
    p99_met = all(p["meets_p99_target"] for p in points)
    scaling_met = all(s["meets_target"] for s in scaled.values())
    errors = sum(p[name]["errors"] for p in points for name in ("lookup", "echo"))
    idle = [
        p[name]["cpu"]["machine_busy_cores_idle_before"] for p in points for name in (*BASELINES, "resolve")
    ]
    busiest = max((x for x in idle if x is not None), default=None)
    return {
        "max_idle_machine_busy_cores": busiest,
        "machine_was_quiet": busiest is not None and busiest <= QUIET_CORES,
        "p99_target_met_everywhere": p99_met,
        "scaling_target_met_everywhere": scaling_met,
        "lookup_and_echo_errors": errors,
        "all_targets_met": p99_met and scaling_met and errors == 0,
    }


async def main(args: argparse.Namespace) -> Json:
    began = time.perf_counter()
    out: Json = {
        "environment": await report.environment(
            "the service (contact-service) and the echo responder run as processes of their own; "
            "the client, the store baselines and the load driver share this one"
        ),
        "config": config(args),
        "targets": {
            "lookup_p99 / (echo_p99 + store_read_p99)": f"<= {P99_TARGET}",
            "lookup_p50 at largest size / at smallest size": f"<= {SCALING_TARGET}",
        },
    }
    out["results"] = results = {str(size): await bench_size(size, args) for size in args.sizes}
    out["scaling"] = scaled = scaling(results, args.sizes, args.rates)
    out["summary"] = summary(results, scaled)
    out["runtime_seconds"] = round(time.perf_counter() - began, 1)
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    add_loop_option(parser)
    args = parser.parse_args(argv)
    if min(args.sizes) < 1 or min(args.rates) <= 0 or args.seconds <= 0 or args.rounds < 1:
        parser.error("sizes, rates, seconds and rounds must be positive")
    if args.quiet_wait < 0 or args.warmup < 0:
        parser.error("warmup and quiet-wait must not be negative")
    return args


def run(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    report.run(main(args), loop=args.loop)


if __name__ == "__main__":
    run()
