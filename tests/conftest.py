"""Fixtures handing integration and end-to-end tests a real Kafka broker and a real MongoDB-wire store.

Endpoints are taken, in this order, from:
1. environment variables ``KAFKA_BOOTSTRAP_SERVERS`` and ``MONGODB_URL`` (an existing cluster);
2. testcontainers (Kafka in KRaft mode and mongo:7) when a Docker engine answers;
3. the local stack of ``deploy/local/stack.sh`` (Apache Kafka + FerretDB), started once per run.

Every test gets its own topic prefix and database, so tests never see each other's messages or data.
"""

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

    from contracts.client import ContactClient
    from service.bootstrap import Application
    from service.config import Settings
    from service.service_layer.context import Services
    from service.service_layer.ports import Clock, EventPublisher, JsonDict

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "deploy" / "local" / "stack.sh"


@dataclass(frozen=True)
class Endpoints:
    kafka: str
    mongodb: str
    source: str
    sasl: dict[str, str] = field(default_factory=dict)
    """The local stack's SASL_SSL listener (KAFKA_SASL_* of ``stack.sh env``), where there is one."""


def _sasl(values: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if k.startswith("KAFKA_SASL_")}


def _docker_answers() -> bool:
    if os.environ.get("TESTS_NO_DOCKER") or shutil.which("docker") is None:
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    kafka, mongodb = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("MONGODB_URL")
    if kafka and mongodb:
        yield Endpoints(kafka, mongodb, "environment", _sasl(os.environ))
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.mongodb import MongoDbContainer

        with (
            KafkaContainer("confluentinc/cp-kafka:7.6.1").with_kraft() as k,
            MongoDbContainer("mongo:7") as m,
        ):
            yield Endpoints(k.get_bootstrap_server(), m.get_connection_url(), "testcontainers")
        return
    was_running = subprocess.run([str(STACK), "status"], capture_output=True).returncode == 0
    subprocess.run([str(STACK), "start"], check=True)
    env = subprocess.run([str(STACK), "env"], check=True, capture_output=True, text=True).stdout
    values = dict(
        line.removeprefix("export ").split("=", 1) for line in env.splitlines() if line.startswith("export ")
    )
    try:
        yield Endpoints(
            values["KAFKA_BOOTSTRAP_SERVERS"], values["MONGODB_URL"], "local stack", _sasl(values)
        )
    finally:
        if not was_running and not os.environ.get("KEEP_STACK"):
            subprocess.run([str(STACK), "stop"], check=False)


@pytest.fixture
async def isolation(endpoints: Endpoints) -> AsyncIterator[tuple[str, str]]:
    """A unique (topic prefix, database name) for one test; its topics are deleted afterwards."""
    tag = uuid.uuid4().hex[:10]
    yield f"t{tag}.", f"test_{tag}"
    await delete_topics(endpoints.kafka, prefix=f"t{tag}.")


async def delete_topics(bootstrap: str, *, prefix: str) -> None:
    """Delete the topics named with ``prefix`` (a test's or a benchmark run's).

    A broker keeping thousands of leftover topics takes several times longer to start.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="tests-cleanup")
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


def store_services(db: "AsyncDatabase[JsonDict]", *, clock: "Clock", events: "EventPublisher") -> "Services":
    """The service layer's ports on the real store (``db``), with the given clock and events:
    for tests and benchmarks that drive the handlers or load the store without the broker."""
    from service.adapters.mongo import (
        MongoAddressBook,
        MongoCommandLog,
        MongoContactRepository,
        MongoSyncStates,
    )
    from service.service_layer.context import Services

    return Services(
        contacts=MongoContactRepository(db),
        addresses=MongoAddressBook(db),
        log=MongoCommandLog(db),
        events=events,
        clock=clock,
        sync_states=MongoSyncStates(db),
    )


def service_settings(endpoints: Endpoints, isolation: tuple[str, str]) -> "Settings":
    from service.config import Settings

    prefix, database = isolation
    return Settings(
        kafka_bootstrap_servers=endpoints.kafka,
        mongodb_url=endpoints.mongodb,
        mongodb_database=database,
        topic_prefix=prefix,
        consumer_group=f"{prefix}contact-service",
        health_port=0,
        topic_partitions=2,
        retry_backoff_max_seconds=0.5,
    )


@asynccontextmanager
async def started(
    settings: "Settings", *, drop_database: bool = True, **build_options: Any
) -> AsyncIterator["Application"]:
    """Run the real service in-process; drop its database afterwards (unless another instance
    started with the same settings does that)."""
    from service.bootstrap import build

    application = build(settings, **build_options)
    await application.app.start()
    try:
        yield application
    finally:
        if drop_database:
            await application.mongo.drop_database(settings.mongodb_database)
        await application.app.stop()


@pytest.fixture
async def running_service(endpoints: Endpoints, isolation: tuple[str, str]) -> AsyncIterator["Application"]:
    """The real service, started in-process against the real broker and store."""
    async with started(service_settings(endpoints, isolation)) as application:
        yield application


@pytest.fixture
async def client(endpoints: Endpoints, isolation: tuple[str, str]) -> AsyncIterator["ContactClient"]:
    from contracts.client import ContactClient

    async with ContactClient(endpoints.kafka, topic_prefix=isolation[0]) as contact_client:
        yield contact_client


class TopicReader:
    """Reads a topic from its beginning (all partitions, no group): what the service published."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.records: list[Any] = []

    async def read(self, *, at_least: int, timeout: float = 20.0, settle: float = 1.0) -> list[Any]:
        """Everything on the topic once ``at_least`` records arrived and ``settle`` seconds passed
        without more (so a test also sees records that should not be there)."""
        import asyncio

        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            self.topic, bootstrap_servers=self.bootstrap, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        records: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while loop.time() < deadline:
                batch = await consumer.getmany(timeout_ms=int(settle * 1000))
                fresh = [r for rs in batch.values() for r in rs]
                records += fresh
                if not fresh and len(records) >= at_least:
                    break
        finally:
            await consumer.stop()
        self.records = records
        return records
