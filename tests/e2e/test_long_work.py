"""Long work keeps its consumer in the group, and its partitions: a bulk that takes several times
Kafka's max poll interval (a slow store), or that is under way when another instance joins the
group, is applied once and answered once, never handed to another consumer half done."""

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from contracts import commands as c
from contracts.client import ContactClient
from service.domain.model import Contact
from service.service_layer.context import Services
from service.service_layer.ports import CommandLog, ContactRepository, LoggedOutcome, Outcome
from tests.conftest import Endpoints, service_settings, started
from tests.factories import cid, create_contact

pytestmark = pytest.mark.integration

POLL_INTERVAL_MS = 2_000
CUSTOMER = "cust-slow-store"


class SlowContacts:
    """The real repository, bulk writes one at a time and each delayed: a store under heavy load."""

    def __init__(self, inner: ContactRepository, delay: float) -> None:
        self.inner, self.delay, self.one_at_a_time = inner, delay, asyncio.Lock()

    async def insert_many(self, *, items: Sequence[tuple[Contact, Outcome]]) -> set[str]:
        async with self.one_at_a_time:
            await asyncio.sleep(self.delay)
            return await self.inner.insert_many(items=items)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class CountingLog:
    """The real command log, counting how often each command is looked up (once per delivery)."""

    def __init__(self, inner: CommandLog, lookups: Counter[str], looked_up: asyncio.Event) -> None:
        self.inner, self.lookups, self.looked_up = inner, lookups, looked_up

    async def get(self, *, customer_id: str, command_id: str) -> LoggedOutcome | None:
        self.lookups[command_id] += 1
        self.looked_up.set()
        return await self.inner.get(customer_id=customer_id, command_id=command_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Watched:
    """Instances whose store writes bulks slowly and whose command log counts lookups, all shared:
    a command applied again by any of them counts twice."""

    def __init__(self, delay: float) -> None:
        self.delay, self.lookups, self.looked_up = delay, Counter[str](), asyncio.Event()

    def adapt(self, services: Services) -> Services:
        slow = SlowContacts(services.contacts, delay=self.delay)
        counting = CountingLog(services.log, self.lookups, self.looked_up)
        return dataclasses.replace(services, contacts=slow, log=counting)


def thousand_callers() -> c.BulkCreateContacts:
    return c.BulkCreateContacts(
        command_id=cid(), customer_id=CUSTOMER, contacts=[{"first_name": f"Caller {i}"} for i in range(1000)]
    )


async def test_a_bulk_taking_several_poll_intervals_is_applied_and_answered_once(
    endpoints: Endpoints, isolation: tuple[str, str], client: ContactClient
) -> None:
    settings = service_settings(endpoints, isolation).model_copy(
        update={"kafka_max_poll_interval_ms": POLL_INTERVAL_MS}
    )
    watched = Watched(delay=1.5)  # 4 chunks of 250: 6 s, 3 intervals
    # Two instances in one group: one that left the group would hand its partition to the other.
    async with (
        started(settings, adapt=watched.adapt),
        started(settings, adapt=watched.adapt, drop_database=False),
    ):
        bulk = thousand_callers()
        started_at = asyncio.get_running_loop().time()
        reply = await client.bulk_create(bulk, timeout=60)
        took = asyncio.get_running_loop().time() - started_at
        follow_up = create_contact(CUSTOMER, first_name="Next")
        assert (await client.command(follow_up, timeout=30)).ok
        await asyncio.sleep(3 * POLL_INTERVAL_MS / 1000)  # time for a redelivery, had there been one

    assert reply.created == 1000
    assert took > 2 * POLL_INTERVAL_MS / 1000  # it really outlasted the interval
    assert watched.lookups[bulk.command_id] == 1, "the bulk was delivered again"
    assert watched.lookups[follow_up.command_id] == 1


async def test_an_instance_joining_mid_batch_gets_the_partition_only_after_the_batch(
    endpoints: Endpoints, isolation: tuple[str, str], client: ContactClient
) -> None:
    # 4 chunks of 3 s: longer than aiokafka's default rebalance timeout (the session timeout, 10 s).
    settings, watched, bulk = service_settings(endpoints, isolation), Watched(delay=3.0), thousand_callers()
    async with started(settings, adapt=watched.adapt):
        answer = asyncio.create_task(client.bulk_create(bulk, timeout=60))
        await watched.looked_up.wait()  # the first instance is applying it (the only command so far)
        # A new member makes the group rebalance while the bulk is being written.
        async with started(settings, adapt=watched.adapt, drop_database=False):
            reply = await answer
            follow_up = create_contact(CUSTOMER, first_name="Next")
            assert (await client.command(follow_up, timeout=30)).ok
            await asyncio.sleep(3)  # time for a redelivery, had there been one

    assert reply.created == 1000
    assert watched.lookups[bulk.command_id] == 1, "the bulk was applied again by the member that took it over"


async def test_an_instance_stopped_mid_batch_finishes_and_commits_it_first(
    endpoints: Endpoints, isolation: tuple[str, str], client: ContactClient
) -> None:
    settings, watched, bulk = service_settings(endpoints, isolation), Watched(delay=1.0), thousand_callers()
    async with started(settings, adapt=watched.adapt, drop_database=False):
        answer = asyncio.create_task(client.bulk_create(bulk, timeout=60))
        await watched.looked_up.wait()
    # Stopped (SIGTERM's path) while the bulk was being written; the next instance starts after.
    async with started(settings, adapt=watched.adapt):
        reply = await answer
        follow_up = create_contact(CUSTOMER, first_name="Next")
        assert (await client.command(follow_up, timeout=30)).ok

    assert reply.created == 1000
    assert watched.lookups[bulk.command_id] == 1, "the bulk was cut short and delivered again"
