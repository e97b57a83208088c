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
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STACK = ROOT / "deploy" / "local" / "stack.sh"


@dataclass(frozen=True)
class Endpoints:
    kafka: str
    mongodb: str
    source: str


def _docker_answers() -> bool:
    if os.environ.get("TESTS_NO_DOCKER") or shutil.which("docker") is None:
        return False
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def endpoints() -> Iterator[Endpoints]:
    kafka, mongodb = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("MONGODB_URL")
    if kafka and mongodb:
        yield Endpoints(kafka, mongodb, "environment")
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer  # type: ignore[import-untyped]
        from testcontainers.mongodb import MongoDbContainer  # type: ignore[import-untyped]

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
        yield Endpoints(values["KAFKA_BOOTSTRAP_SERVERS"], values["MONGODB_URL"], "local stack")
    finally:
        if not was_running and not os.environ.get("KEEP_STACK"):
            subprocess.run([str(STACK), "stop"], check=False)


@pytest.fixture
def isolation() -> tuple[str, str]:
    """A unique (topic prefix, database name) for one test."""
    tag = uuid.uuid4().hex[:10]
    return f"t{tag}.", f"test_{tag}"


@pytest.fixture
async def running_service(endpoints: Endpoints, isolation: tuple[str, str]) -> AsyncIterator[object]:
    """The real service, started in-process against the real broker and store."""
    from service.bootstrap import build
    from service.config import Settings

    prefix, database = isolation
    settings = Settings(
        kafka_bootstrap_servers=endpoints.kafka,
        mongodb_url=endpoints.mongodb,
        mongodb_database=database,
        topic_prefix=prefix,
        consumer_group=f"{prefix}contact-service",
        health_port=0,
        topic_partitions=2,
        retry_backoff_max_seconds=0.5,
    )
    application = build(settings)
    await application.app.start()
    try:
        yield application
    finally:
        await application.mongo.drop_database(database)
        await application.app.stop()


@pytest.fixture
async def client(endpoints: Endpoints, isolation: tuple[str, str]) -> AsyncIterator[object]:
    from contracts.client import ContactClient

    async with ContactClient(endpoints.kafka, topic_prefix=isolation[0]) as contact_client:
        yield contact_client
