"""Raw ceilings: the same store doing the same writes with nothing around them (PyMongo straight),
against which the service's rates are judged. Passes are repeated and the median counts, because a
single pass swings widely on a shared machine (numbers in the README)."""

import statistics
import time
from collections.abc import Sequence
from typing import Any

from tests.benchmarks.load import ADDRESSES, COMMAND_LOG, CONTACT_LIST, CONTACTS, SYNC_STATE, ensure_schema
from tests.benchmarks.process import BATCH
from tests.benchmarks.stats import Json, latency_ms

RAW_RUNS = 3
REWRITTEN = (CONTACTS, ADDRESSES, CONTACT_LIST, SYNC_STATE, COMMAND_LOG)
"""Every collection the service writes on sync and bulk create."""


async def rewrite(mongo: Any, source: str) -> tuple[list[float], int]:
    """The documents the service wrote in database ``source``, written again ``RAW_RUNS`` times with
    ``insert_many`` in the service's batch size into a fresh database carrying the service's indexes
    (the same store means the same index upkeep); seconds of each run, and the documents written."""
    docs = {name: await mongo[source][name].find({}).to_list() for name in REWRITTEN}
    target = f"{source}_raw"
    runs = []
    for _ in range(RAW_RUNS):
        await mongo.drop_database(target)
        await ensure_schema(mongo[target])
        started = time.perf_counter()
        for name in REWRITTEN:
            rows = docs[name]
            for i in range(0, len(rows), BATCH):
                await mongo[target][name].insert_many(rows[i : i + BATCH], ordered=False)
        runs.append(time.perf_counter() - started)
    await mongo.drop_database(target)
    return runs, sum(len(v) for v in docs.values())


def versus_rewrite(count: int, elapsed: float, runs: list[float], docs: int, target: float) -> Json:
    """The service's rate for ``count`` contacts in ``elapsed`` seconds next to ``rewrite``'s (its
    median run), and whether it reaches ``target`` times it."""
    raw_seconds = statistics.median(runs)
    service_rate, raw_rate = count / elapsed, count / raw_seconds
    return {
        "service_seconds": round(elapsed, 2),
        "service_contacts_per_second": round(service_rate, 1),
        "raw_documents": docs,
        "raw_with_service_indexes": True,
        "raw_seconds": round(raw_seconds, 2),
        "raw_seconds_runs": [round(s, 2) for s in runs],
        "raw_contacts_per_second": round(raw_rate, 1),
        "ratio_to_raw": round(service_rate / raw_rate, 3),
        "target_ratio": target,
        "meets_target": service_rate / raw_rate >= target,
    }


async def contact_docs(db: Any, ids: Sequence[str], projection: Json | None = None) -> list[Json]:
    """Stored contact documents by id, in order; each must exist."""
    docs = [await db[CONTACTS].find_one({"_id": i}, projection) for i in ids]
    missing = [i for i, doc in zip(ids, docs, strict=True) if doc is None]
    if missing:
        raise RuntimeError(f"contacts not stored: {missing[:3]}")
    return docs


async def replace_pass(db: Any, ids: Sequence[str]) -> list[float]:
    """One pass of ``replace_one({"_id": ...})`` of stored contacts, one after another (what one
    compare-and-set write costs the store alone); each call's latency in seconds."""
    latencies = []
    for doc in await contact_docs(db, ids):
        doc["first_name"] = "Raw"
        t = time.perf_counter()
        await db[CONTACTS].replace_one({"_id": doc["_id"]}, doc)
        latencies.append(time.perf_counter() - t)
    return latencies


def replace_summary(passes: list[list[float]]) -> Json:
    """The median pass's rate is the ceiling; p50 and p99 over all passes."""
    rates = [round(len(p) / sum(p), 1) for p in passes]
    return {
        "count": sum(len(p) for p in passes),
        "passes_per_second": rates,
        "per_second": statistics.median(rates),
        **latency_ms([x for p in passes for x in p]),
    }
