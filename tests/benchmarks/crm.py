"""CRM sync messages produced to the service's sync topic, and waiting until the service applied them."""

import asyncio
import json
import logging
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer

from contracts import topics
from contracts.sync import sync_key
from tests.benchmarks.process import KAFKA, Service
from tests.benchmarks.stats import Json

log = logging.getLogger("bench")

Message = tuple[bytes, bytes]
"""A sync message's Kafka key and value."""


def upsert(customer_id: str, external_id: str, contact: Json, *, version: int = 1) -> Message:
    """A ``crm_contact_upserted`` message for one external contact."""
    value = {
        "type": "crm_contact_upserted",
        "customer_id": customer_id,
        "crm": "salesforce",
        "external_id": external_id,
        "crm_version": version,
        "contact": contact,
    }
    return sync_key(customer_id, external_id), json.dumps(value).encode()


async def produce(prefix: str, messages: Iterable[Message], *, linger_ms: int = 20) -> float:
    """Produce ``messages`` to the sync topic of ``prefix``, acked; seconds that took."""
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, linger_ms=linger_ms, max_batch_size=1 << 20, acks=1)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for key, value in messages:
            pending.append(await producer.send(f"{prefix}{topics.CRM_SYNC}", value, key=key))
            if len(pending) >= 5000:  # bounds the futures (and the producer's buffer) held at once
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def _outcome(counters: Json, outcome: str) -> float:
    return float(counters.get(f"contact_sync_messages_total{{outcome={outcome}}}", 0))


def _handled(counters: Json) -> int:
    return int(sum(_outcome(counters, o) for o in ("applied", "stale", "failed")))


async def wait_applied(
    service: Service,
    count: int,
    *,
    since: Json | None = None,
    poll: float = 0.05,
    samples: list[tuple[int, int]] | None = None,
) -> float:
    """Wait until the service has handled ``count`` sync items since its counters were ``since``
    (default: since it started), none failed; seconds that took. With ``samples``, (items handled,
    RSS MB) once a ``poll``."""
    before = since or {}
    started, last = time.perf_counter(), -1
    while True:
        counters = await service.get("/metrics")
        done = _handled(counters) - _handled(before)
        if samples is not None:
            samples.append((done, service.memory()["VmRSS"]))
        failed = _outcome(counters, "failed") - _outcome(before, "failed")
        if failed:
            raise SystemExit(f"{failed} sync items failed")
        if done >= count:
            return time.perf_counter() - started
        if done != last and done // 50000 != last // 50000:
            log.info("  %d/%d applied, %.0fs", done, count, time.perf_counter() - started)
        last = done
        await asyncio.sleep(poll)
