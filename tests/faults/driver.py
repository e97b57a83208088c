"""Drives a run: commands in per-customer rounds, CRM sync messages, lookups in a closed loop, and
(in a faulty run) faults on a schedule. Every message is sent until the broker acknowledged it;
a command's reply is awaited, never resent for (resending would hide a lost command)."""

import asyncio
import itertools
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts import headers, topics
from tests.faults.workload import CommandCustomer, JsonDict, SyncPlan


@dataclass
class Counts:
    commands: int = 0
    sync: int = 0
    lookups: int = 0
    resends: int = 0
    """Sends the broker did not acknowledge, sent again (the service dedupes them)."""
    missing_replies: list[str] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return self.commands + self.sync + self.lookups


class Requester:
    """A producer that sends until acknowledged, and one reply reader resolving futures by correlation id."""

    def __init__(self, bootstrap: str, prefix: str, counts: Counts) -> None:
        self.bootstrap, self.prefix, self.counts = bootstrap, prefix, counts
        self.reply_topic = f"{prefix}faults.replies"
        self.pending: dict[str, asyncio.Future[JsonDict]] = {}
        common: dict[str, Any] = {"bootstrap_servers": bootstrap, "request_timeout_ms": 5000}
        self.producer = AIOKafkaProducer(**common, acks="all", enable_idempotence=True, linger_ms=2)
        self.consumer = AIOKafkaConsumer(**common, enable_auto_commit=False, fetch_max_wait_ms=20)
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            if self.reply_topic not in await admin.list_topics():
                await admin.create_topics([NewTopic(self.reply_topic, 1, 1)])
        finally:
            await admin.close()
        await self.producer.start()
        await self.consumer.start()
        partition = TopicPartition(self.reply_topic, 0)
        self.consumer.assign([partition])
        await self.consumer.seek_to_end(partition)
        await self.consumer.position(partition)
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._reader:
            self._reader.cancel()
        await self.consumer.stop()
        await self.producer.stop()

    async def _read(self) -> None:
        async for record in self.consumer:
            correlation = dict(record.headers or ()).get(headers.CORRELATION_ID, b"").decode()
            future = self.pending.get(correlation)
            if future is not None and not future.done():
                future.set_result(json.loads(record.value or b"{}"))

    async def send(self, topic: str, key: bytes, value: JsonDict, *, reply: str | None = None) -> None:
        """Send until the broker acknowledges (after a broker kill the first tries fail)."""
        extra = [] if reply is None else [(headers.REPLY_TO, self.reply_topic.encode()),
                                           (headers.CORRELATION_ID, reply.encode())]  # fmt: skip
        body = json.dumps(value).encode()
        while True:
            try:
                await self.producer.send_and_wait(self.prefix + topic, body, key=key, headers=extra)
                return
            except Exception:
                self.counts.resends += 1
                await asyncio.sleep(0.5)

    def expect(self, correlation: str) -> "asyncio.Future[JsonDict]":
        future: asyncio.Future[JsonDict] = asyncio.get_running_loop().create_future()
        self.pending[correlation] = future
        return future


async def command_rounds(
    requester: Requester, customer: CommandCustomer, *, rounds: int, size: int, reply_timeout: float
) -> None:
    """One customer's rounds: send the round in order, then wait for every reply before the next."""
    counts = requester.counts
    while customer.rounds_done < rounds:
        commands = customer.next_round(size)
        futures = [requester.expect(c["command_id"]) for c in commands]
        for command in commands:
            await requester.send(
                topics.COMMANDS, customer.customer_id.encode(), command, reply=command["command_id"]
            )
            counts.commands += 1
        for command, future in zip(commands, futures, strict=True):
            try:
                customer.took(command, await asyncio.wait_for(future, reply_timeout))
            except TimeoutError:
                counts.missing_replies.append(command["command_id"])
            finally:
                requester.pending.pop(command["command_id"], None)


async def sync_stream(requester: Requester, plan: SyncPlan, *, rate: float) -> None:
    """Every sync message of the plan, in order, at about ``rate`` a second."""
    started = time.monotonic()
    for n, (key, message) in enumerate(plan.messages()):
        if n % 50 == 0:
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        await requester.send(topics.CRM_SYNC, key, message)
        requester.counts.sync += 1


@dataclass
class LookupLog:
    answered: list[float] = field(default_factory=list)
    errors: int = 0
    timeouts: int = 0
    cross_tenant: list[str] = field(default_factory=list)

    def summary(self, windows: list[tuple[float, float]]) -> JsonDict:
        """Longest time without an answer, overall and outside the broker's own outages."""
        times = sorted(self.answered)
        gaps = [(b - a, a, b) for a, b in itertools.pairwise(times)]
        total = len(times) + self.errors + self.timeouts

        def clear(a: float, b: float) -> bool:
            return not any(start < b and a < end for start, end in windows)

        return {
            "answered": len(times),
            "errors": self.errors,
            "timeouts": self.timeouts,
            "error_rate": round((self.errors + self.timeouts) / total, 5) if total else 0.0,
            "longest_gap_s": round(max((g for g, _, _ in gaps), default=0.0), 3),
            "longest_gap_outside_broker_outages_s": round(
                max((g for g, a, b in gaps if clear(a, b)), default=0.0), 3
            ),
            "cross_tenant_answers": len(self.cross_tenant),
        }


async def lookups(
    requester: Requester,
    phones: Callable[[], list[tuple[str, str]]],
    log: LookupLog,
    stop: asyncio.Event,
    *,
    timeout: float = 2.0,
    seed: int = 0,
) -> None:
    """Closed loop: ask who is calling, wait up to ``timeout``, ask again."""
    rng = random.Random(seed)
    while not stop.is_set():
        known = phones()
        if not known:
            await asyncio.sleep(0.1)
            continue
        customer_id, phone = rng.choice(known)
        correlation = uuid.uuid4().hex
        future = requester.expect(correlation)
        query = {"type": "lookup_contact", "customer_id": customer_id, "phone": phone}
        await requester.send(topics.LOOKUPS, phone.encode(), query, reply=correlation)
        requester.counts.lookups += 1
        try:
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            log.timeouts += 1
            continue
        finally:
            requester.pending.pop(correlation, None)
        found = reply.get("result") or {}
        if found and found.get("customer_id") != customer_id:
            log.cross_tenant.append(f"{customer_id} asked, {found.get('customer_id')} answered")
        if reply.get("ok") or (reply.get("error") or {}).get("code") == "CONTACT_NOT_FOUND":
            log.answered.append(time.monotonic())
        else:
            log.errors += 1
