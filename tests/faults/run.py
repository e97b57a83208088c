"""One fault-suite run: a fault-free reference run of the profile's input, then the same input with
faults, then a replay, then the invariants. Prints (and writes) one JSON document."""

import asyncio
import itertools
import json
import os
import random
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from contracts import topics
from tests.faults import check
from tests.faults.cluster import ROOT, Fleet, Stack
from tests.faults.driver import Counts, LookupLog, Requester, command_rounds, lookups, sync_stream
from tests.faults.workload import CommandCustomer, JsonDict, SyncPlan


def say(message: str) -> None:
    print(f"[faults] {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


FAULT_KINDS = ("service_kill", "broker_kill", "store_kill", "rebalance")


@dataclass(frozen=True)
class Profile:
    name: str
    customers: int
    rounds: int
    round_size: int
    sync_customers: int
    sync_externals: int
    sync_versions: int
    sync_rate: float
    faults_each: int
    fault_interval: float
    instances: int = 3
    partitions: int = 6
    lookup_loops: int = 4
    min_messages: int = 0
    """Lookups (and faults) go on until this many messages were sent in all."""

    @property
    def planned_messages(self) -> int:
        commands = self.customers * self.rounds * self.round_size
        return commands + self.sync_customers * self.sync_externals * self.sync_versions


PROFILES = {
    "ci": Profile("ci", customers=12, rounds=12, round_size=4, sync_customers=3, sync_externals=30,
                  sync_versions=5, sync_rate=60, faults_each=2, fault_interval=2.0),
    "full": Profile("full", customers=40, rounds=150, round_size=4, sync_customers=10, sync_externals=100,
                    sync_versions=10, sync_rate=40, faults_each=20, fault_interval=6.0, lookup_loops=16,
                    min_messages=100_000),
}  # fmt: skip


@dataclass
class Run:
    """One run's names, processes and clients."""

    stack: Stack
    profile: Profile
    label: str
    seed: int

    def __post_init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.prefix, self.database = f"f{tag}.", f"faults_{self.label}_{tag}"
        self.counts = Counts()
        self.requester = Requester(self.stack.kafka, self.prefix, self.counts)
        self.fleet = Fleet(self.service_env(), ROOT / ".cache" / "faults" / "logs" / f"{self.label}-{tag}")
        self.customers = [CommandCustomer(i, self.seed) for i in range(self.profile.customers)]
        self.sync = SyncPlan(self.profile.sync_customers, self.profile.sync_externals,
                             self.profile.sync_versions, self.seed)  # fmt: skip

    def service_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.stack.kafka,
            "MONGODB_URL": self.stack.mongodb,
            "MONGODB_DATABASE": self.database,
            "TOPIC_PREFIX": self.prefix,
            "CONSUMER_GROUP": f"{self.prefix}contact-service",
            "TOPIC_PARTITIONS": str(self.profile.partitions),
            "RETRY_BACKOFF_MAX_SECONDS": "1",
            "LOG_LEVEL": "WARNING",
            "COLUMNS": "200",
        }

    async def start(self, instances: int) -> None:
        self.fleet.add()
        await self._topics_exist()
        for _ in range(instances - 1):
            self.fleet.add()
        await self.requester.start()

    async def _topics_exist(self, timeout: float = 120) -> None:
        wanted = {self.prefix + t for t in (topics.COMMANDS, topics.CRM_SYNC, topics.LOOKUPS, topics.EVENTS)}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.stack.kafka)
            try:
                await admin.start()
                if wanted <= set(await admin.list_topics()):
                    return
            except Exception:
                pass
            finally:
                await admin.close()
            await asyncio.sleep(0.5)
        raise RuntimeError(f"the service did not create its topics in {timeout}s")

    async def load(self, reply_timeout: float) -> None:
        p = self.profile
        await asyncio.gather(
            sync_stream(self.requester, self.sync, rate=p.sync_rate),
            *(command_rounds(self.requester, c, rounds=p.rounds, size=p.round_size,
                             reply_timeout=reply_timeout) for c in self.customers),
        )  # fmt: skip

    def phones(self) -> list[tuple[str, str]]:
        known = [(c.customer_id, phone) for c in self.customers for phone in c.phones()]
        return known + self.sync.phones()

    async def ops(self, *args: str, timeout: float = 180) -> tuple[int, Any]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service.main", "ops", *args, "--json", cwd=ROOT, env=self.service_env(),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        stdout, _ = await asyncio.wait_for(process.communicate(), timeout)
        text = stdout.decode().strip()
        return process.returncode or 0, json.loads(text) if text else None

    async def caught_up(self, timeout: float) -> int:
        """Wait for lag 0 on every group; the lag left when ``timeout`` ran out."""
        deadline = time.monotonic() + timeout
        lag = -1
        while time.monotonic() < deadline:
            try:
                _, report = await self.ops("status")
                lag = sum(g["lag"] for g in report["groups"])
                if lag == 0:
                    return 0
            except Exception:
                pass
            await asyncio.sleep(2)
        return lag

    async def snapshot(self) -> list[JsonDict]:
        return await check.contacts(self.stack.mongodb, self.database)

    async def close(self) -> None:
        await self.requester.stop()
        await self.fleet.stop_all()


class Faults:
    """Injects one fault every ``interval`` seconds, the kinds in turn, until told to stop and each
    kind reached its count."""

    def __init__(self, run: Run, *, each: int, interval: float, seed: int) -> None:
        self.run, self.each, self.interval = run, each, interval
        self.counts = dict.fromkeys(FAULT_KINDS, 0)
        self.broker_outages: list[tuple[float, float]] = []
        self.rng = random.Random(seed)

    async def inject(self, load_done: asyncio.Event) -> None:
        for kind in itertools.cycle(FAULT_KINDS):
            enough = self.run.counts.messages >= self.run.profile.min_messages
            if load_done.is_set() and enough and min(self.counts.values()) >= self.each:
                return
            await asyncio.sleep(self.interval)
            await getattr(self, kind)()
            self.counts[kind] += 1

    async def service_kill(self) -> None:
        fleet = self.run.fleet
        fleet.kill(self.rng.choice(sorted(fleet.running)))
        await asyncio.sleep(1)
        fleet.add()

    async def broker_kill(self) -> None:
        started = time.monotonic()
        await self.run.stack.kill("kafka")
        await asyncio.sleep(1)
        await self.run.stack.start()
        self.broker_outages.append((started, time.monotonic()))

    async def store_kill(self) -> None:
        await self.run.stack.kill("ferretdb")
        await asyncio.sleep(1)
        await self.run.stack.start()

    async def rebalance(self) -> None:
        """One instance added, then the longest-running one leaves."""
        fleet = self.run.fleet
        fleet.add()
        await asyncio.sleep(self.interval)
        await fleet.stop(next(iter(fleet.running)))


async def reference_run(stack: Stack, profile: Profile, seed: int) -> tuple[Run, list[JsonDict], float]:
    started = time.monotonic()
    run = Run(stack, profile, "reference", seed)
    await run.start(1)
    try:
        await run.load(reply_timeout=300)
        if await run.caught_up(300):
            raise RuntimeError("the fault-free run did not catch up")
        return run, await run.snapshot(), time.monotonic() - started
    finally:
        await run.close()


async def faulty_run(stack: Stack, profile: Profile, seed: int, v: check.Violations) -> tuple[Run, JsonDict]:
    run = Run(stack, profile, "faults", seed)
    started = time.monotonic()
    await run.start(profile.instances)
    faults = Faults(run, each=profile.faults_each, interval=profile.fault_interval, seed=seed)
    log, stop, load_done = LookupLog(), asyncio.Event(), asyncio.Event()
    readers = [asyncio.create_task(lookups(run.requester, run.phones, log, stop, seed=seed + n))
               for n in range(profile.lookup_loops)]  # fmt: skip
    injecting = asyncio.create_task(faults.inject(load_done))
    await run.load(reply_timeout=300)
    load_done.set()
    await injecting
    stop.set()
    await asyncio.gather(*readers)
    for name in run.fleet.crashed():
        v.add("instance_crashed", name)
    lag = await run.caught_up(600)
    if lag:
        v.add("lag_not_zero", f"lag {lag} after the run")
    for detail in log.cross_tenant:
        v.add("cross_tenant_lookup", detail)
    for command_id in run.counts.missing_replies:
        v.add("command_without_reply", command_id)
    figures = {
        "seconds": round(time.monotonic() - started, 1),
        "faults": faults.counts,
        "instances_started": run.fleet.started,
        "lookups": log.summary(faults.broker_outages),
        "broker_outage_s": round(sum(b - a for a, b in faults.broker_outages), 1),
    }
    return run, figures


async def replay(run: Run, v: check.Violations) -> JsonDict:
    """Stop the fleet, move its groups back to the beginning, start it again: nothing may change."""
    before = await run.snapshot()
    await run.fleet.stop_all()
    code, report = await run.ops(
        "replay", "--topic", "commands", "--topic", "crm-sync", "--earliest", "--wait", "60"
    )
    if code:
        raise RuntimeError(f"ops replay refused: {report}")
    again = sum(plan["messages_again"] for plan in report["replays"])
    started = time.monotonic()
    for _ in range(run.profile.instances):
        run.fleet.add()
    lag = await run.caught_up(900)
    if lag:
        v.add("lag_not_zero", f"lag {lag} after the replay")
    check.replay_invariant(before, await run.snapshot(), v)
    return {"messages_again": again, "seconds": round(time.monotonic() - started, 1)}


async def main(profile: Profile, *, seed: int, keep_stack: bool) -> JsonDict:
    stack = Stack(ROOT / ".cache" / "faults" / "run")
    stack.fresh()
    await stack.start()
    v = check.Violations()
    t0 = time.monotonic()
    try:
        say(f"fault-free run of profile {profile.name} ({profile.planned_messages} commands and sync)")
        reference, expected_docs, reference_seconds = await reference_run(stack, profile, seed)
        say(f"fault-free run done in {reference_seconds:.0f}s; the same input with faults")
        run, figures = await faulty_run(stack, profile, seed, v)
        try:
            say(f"faulty run done in {figures['seconds']}s: {figures['faults']}; replay")
            replayed = await replay(run, v)
            say("checking")
            docs = await run.snapshot()
            check.store_invariants(docs, v)
            check.compare(check.by_handle(docs, run.customers, v),
                          check.by_handle(expected_docs, reference.customers, v), v)  # fmt: skip
            check.signatures(run.customers, reference.customers, v)
            events = check.event_invariants(
                await check.read_events(stack.kafka, run.prefix + topics.EVENTS), docs, v
            )
        finally:
            await run.close()
        result: JsonDict = {
            "profile": asdict(profile),
            "seed": seed,
            "messages": {
                "commands": run.counts.commands,
                "sync": run.counts.sync,
                "lookups": run.counts.lookups,
                "total": run.counts.messages,
                "resent_after_unacknowledged_send": run.counts.resends,
            },
            "contacts": len(docs),
            "faults": figures.pop("faults"),
            "events": events,
            "replay": replayed,
            "faulty_run": figures,
            "reference_run_seconds": round(reference_seconds, 1),
            "invariants": v.summary(check.KINDS),
            "run_seconds": round(time.monotonic() - t0, 1),
        }
    finally:
        if not keep_stack:
            stack.stop()
    result = check.plain(result)
    print(json.dumps(result, indent=2))
    return result
