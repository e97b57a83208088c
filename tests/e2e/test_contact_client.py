"""ContactClient's reply topic on the real broker: its own is made with the broker's default
replication factor and deleted when it stops (a failed deletion is logged, not raised), also over
SASL_SSL; a passed one is kept and reused by the next client."""

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError
from pydantic import SecretStr

from contracts.client import ContactClient
from contracts.security import KafkaSecurity
from service.bootstrap import Application
from tests.conftest import Endpoints
from tests.factories import create_contact, ok

pytestmark = pytest.mark.integration

CUST = "cust-replies"


@pytest.fixture
async def admin(endpoints: Endpoints) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=endpoints.kafka, client_id="tests-reply-topics")
    await client.start()
    yield client
    await client.close()


async def topics_now(
    admin: AIOKafkaAdminClient, prefix: str, *, settle_on: set[str] | None = None
) -> set[str]:
    """The topics named with ``prefix``; with ``settle_on``, polled (up to 10 s) until they are that
    set (a deletion reaches every broker's metadata a moment after it is answered)."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        mine = {t for t in await admin.list_topics() if t.startswith(prefix)}
        if settle_on is None or mine == settle_on or asyncio.get_running_loop().time() > deadline:
            return mine
        await asyncio.sleep(0.2)


async def broker_default_replication(admin: AIOKafkaAdminClient) -> int:
    broker = (await admin.describe_cluster())["brokers"][0]["node_id"]
    resource = ConfigResource(
        ConfigResourceType.BROKER, str(broker), configs={"default.replication.factor": None}
    )
    (response,) = await admin.describe_configs([resource])
    (entry,) = response.to_object()["resources"][0]["config_entries"]
    return int(entry["config_value"])


async def test_own_reply_topic_has_the_broker_default_replication_and_is_deleted_on_close(
    running_service: Application, endpoints: Endpoints, isolation: tuple[str, str], admin: AIOKafkaAdminClient
) -> None:
    prefix = isolation[0]
    before = await topics_now(admin, prefix)
    async with ContactClient(endpoints.kafka, topic_prefix=prefix) as client:
        assert client.owns_reply_topic and client.reply_topic.startswith(f"{prefix}contacts.replies.")
        assert client.reply_topic in await topics_now(admin, prefix)
        (described,) = await admin.describe_topics([client.reply_topic])
        assert len(described["partitions"]) == 1
        replicas = len(described["partitions"][0]["replicas"])
        assert replicas == await broker_default_replication(admin)
        created = ok(await client.command(create_contact(CUST, phone_numbers=[{"number": "+14155550142"}])))
        assert (await client.lookup_phone(CUST, "+14155550142")).result == created
    assert client.reply_topic not in await topics_now(admin, prefix, settle_on=before)
    await client.stop()  # twice: harmless, nothing left to delete


async def test_a_passed_reply_topic_is_kept_and_reused_by_the_next_client(
    running_service: Application, endpoints: Endpoints, isolation: tuple[str, str], admin: AIOKafkaAdminClient
) -> None:
    prefix = isolation[0]
    shared = f"{prefix}routing.contact-replies"
    async with ContactClient(endpoints.kafka, topic_prefix=prefix, reply_topic=shared) as first:
        assert not first.owns_reply_topic and first.reply_topic == shared
        created = ok(await first.command(create_contact(CUST, phone_numbers=[{"number": "+14155550143"}])))
    assert shared in await topics_now(admin, prefix)
    async with (
        ContactClient(endpoints.kafka, topic_prefix=prefix, reply_topic=shared) as second,
        ContactClient(endpoints.kafka, topic_prefix=prefix, reply_topic=shared) as third,
    ):
        # Two clients on one reply topic at once: each takes its own replies, skips the other's.
        replies = await asyncio.gather(
            *(c.lookup_phone(CUST, "+14155550143") for c in (second, third, second, third))
        )
        assert [r.result for r in replies] == [created] * 4
    after = await topics_now(admin, prefix)
    assert shared in after
    assert not any(t.startswith(f"{prefix}contacts.replies.") for t in after)  # the clients' own: gone


async def test_a_failed_deletion_is_logged_not_raised(
    endpoints: Endpoints,
    isolation: tuple[str, str],
    admin: AIOKafkaAdminClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = ContactClient(endpoints.kafka, topic_prefix=isolation[0])
    await client.start()

    class Unreachable(AIOKafkaAdminClient):  # type: ignore[misc]
        async def delete_topics(self, *args: Any, **kwargs: Any) -> Any:
            raise KafkaConnectionError("broker went away")

    monkeypatch.setattr(
        client,
        "_admin",
        lambda: Unreachable(bootstrap_servers=endpoints.kafka, client_id="tests-unreachable"),
    )
    with caplog.at_level(logging.WARNING, logger="contracts.client"):
        await client.stop()
    assert f"reply topic {client.reply_topic} not deleted" in caplog.text
    assert "broker went away" in caplog.text
    assert client.reply_topic in await topics_now(admin, isolation[0])  # left for the cleanup


async def test_the_reply_topic_is_made_and_deleted_with_the_client_security(
    endpoints: Endpoints, isolation: tuple[str, str], admin: AIOKafkaAdminClient
) -> None:
    if not endpoints.sasl:
        pytest.skip("needs the local stack's SASL_SSL listener (deploy/local/stack.sh)")
    security = KafkaSecurity(
        protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        username=endpoints.sasl["KAFKA_SASL_USERNAME"],
        password=SecretStr(endpoints.sasl["KAFKA_SASL_PASSWORD"]),
        ca_file=endpoints.sasl["KAFKA_SASL_CA_FILE"],
    )
    sasl_servers = endpoints.sasl["KAFKA_SASL_BOOTSTRAP_SERVERS"]
    async with ContactClient(sasl_servers, topic_prefix=isolation[0], security=security) as client:
        assert client.reply_topic in await topics_now(admin, isolation[0])
    assert await topics_now(admin, isolation[0], settle_on=set()) == set()
