"""A real Java caller asks "who is calling?" through Spring Kafka's ReplyingKafkaTemplate.

The caller (tests/java/spring-caller) is built with Maven once per session and run as a separate JVM.
Spring generates the correlation ids (16-byte binary UUIDs) and matches the replies to its requests;
the test only reads what the caller printed: ``<phone>\\t<reply body>`` per answer, in the order asked.
"""

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts import topics
from contracts.client import ContactClient
from service.bootstrap import Application
from tests.factories import create_contact

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CALLER = ROOT / "tests" / "java" / "spring-caller"
CALLER_JAR = CALLER / "target" / "spring-caller-all.jar"
MAVEN_REPO = ROOT / ".cache" / "stack" / "m2"

CUSTOMER = "cust-spring"
ADA, GRACE = "+15551234567", "+15557654321"
UNKNOWN = "+15550000001"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required to build and run the Spring Kafka caller (Java 17+ and Maven)")
    return path


@pytest.fixture(scope="session")
def spring_caller() -> list[str]:
    """The command line that runs the caller: ``java -jar spring-caller-all.jar`` (built here, once)."""
    java, mvn = _tool("java"), _tool("mvn")
    started = time.monotonic()
    build = subprocess.run(
        [mvn, "-B", "-q", "-f", str(CALLER / "pom.xml"), f"-Dmaven.repo.local={MAVEN_REPO}", "package"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if build.returncode != 0 or not CALLER_JAR.is_file():
        pytest.fail(f"building the Spring Kafka caller failed:\n{build.stdout}\n{build.stderr}")
    print(f"spring-caller built in {time.monotonic() - started:.1f} s")
    return [java, "-jar", str(CALLER_JAR)]


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def call(command: list[str], *args: str, timeout: float = 120) -> tuple[int | None, str, str]:
    """Run the caller; its exit status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        *command,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


def answers(stdout: str) -> list[tuple[str, dict[str, Any]]]:
    """``(phone, reply body)`` per printed line."""
    lines = [line.split("\t", 1) for line in stdout.splitlines()]
    assert all(len(parts) == 2 for parts in lines), stdout
    return [(phone, json.loads(body)) for phone, body in lines]


async def test_spring_replying_kafka_template_gets_its_answers(
    running_service: Application, client: ContactClient, spring_caller: list[str], isolation: tuple[str, str]
) -> None:
    ids = {}
    for name, number in (("Ada", ADA), ("Grace", GRACE)):
        reply = await client.command(
            create_contact(CUSTOMER, first_name=name, phone_numbers=[{"number": number, "type": "mobile"}])
        )
        assert reply.ok and reply.result is not None, reply.error
        ids[name] = reply.result.id
    settings = running_service.settings
    bootstrap, lookups = settings.kafka_bootstrap_servers, settings.topic(topics.LOOKUPS)
    # Two partitions: Spring cannot pick one, so the caller sets kafka_replyTopic and kafka_replyPartition
    # itself, alternating 0 and 1, and checks each reply came back on the partition it asked for.
    spread = f"{isolation[0]}spring.replies.spread"
    # One partition: Spring adds both headers on its own (explicit assignment of a single partition).
    single = f"{isolation[0]}spring.replies.single"
    await create_topic(bootstrap, spread, 2)
    await create_topic(bootstrap, single, 1)

    national = f"({ADA[2:5]}) {ADA[5:8]}-{ADA[8:]}"
    asked = [ADA, national, GRACE, UNKNOWN]
    (status, out, err), (single_status, single_out, single_err) = await asyncio.gather(
        call(spring_caller, bootstrap, lookups, spread, CUSTOMER, *asked),
        call(spring_caller, bootstrap, lookups, single, CUSTOMER, GRACE),
    )
    assert status == 0, err
    assert single_status == 0, single_err

    got = answers(out)
    assert [phone for phone, _ in got] == asked
    found = [body["result"] for _, body in got[:3]]
    assert all(body["ok"] and body["error"] is None for _, body in got[:3]), got
    assert [(r["id"], r["first_name"]) for r in found] == [
        (ids["Ada"], "Ada"),
        (ids["Ada"], "Ada"),  # the national format finds the same contact
        (ids["Grace"], "Grace"),
    ]
    assert [p["number_e164"] for r in found for p in r["phone_numbers"]] == [ADA, ADA, GRACE]
    missing = got[3][1]
    assert missing["ok"] is False and missing["error"]["code"] == "CONTACT_NOT_FOUND", missing

    [(phone, body)] = answers(single_out)
    assert phone == GRACE and body["ok"] and body["result"]["id"] == ids["Grace"], body
    # Spring put the reply partition header on by itself: a 4-byte big-endian 0.
    assert "kafka_replyPartition=00000000 (0)" in single_err, single_err
