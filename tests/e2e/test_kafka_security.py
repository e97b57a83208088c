"""Through the local stack's SASL_SSL listener: the service and ContactClient work with SCRAM over
TLS; wrong credentials stop the start with a clear error; JSON logs never carry the password."""

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from contracts.client import ContactClient
from contracts.security import KafkaSecurity, Mechanism
from tests.conftest import Endpoints, service_settings, started
from tests.factories import create_contact, ok, present

pytestmark = pytest.mark.integration

CUST = "cust-secure"


@pytest.fixture
def sasl(endpoints: Endpoints) -> dict[str, str]:
    if not endpoints.sasl:
        pytest.skip("needs the local stack's SASL_SSL listener (deploy/local/stack.sh)")
    return endpoints.sasl


def _security(sasl: dict[str, str], mechanism: Mechanism) -> KafkaSecurity:
    return KafkaSecurity(
        protocol="SASL_SSL",
        sasl_mechanism=mechanism,
        username=sasl["KAFKA_SASL_USERNAME"],
        password=SecretStr(sasl["KAFKA_SASL_PASSWORD"]),
        ca_file=sasl["KAFKA_SASL_CA_FILE"],
    )


async def test_the_service_and_the_client_work_over_sasl_ssl(
    endpoints: Endpoints, isolation: tuple[str, str], sasl: dict[str, str]
) -> None:
    settings = service_settings(endpoints, isolation).model_copy(
        update={
            "kafka_bootstrap_servers": sasl["KAFKA_SASL_BOOTSTRAP_SERVERS"],
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": sasl["KAFKA_SASL_USERNAME"],
            "kafka_sasl_password": sasl["KAFKA_SASL_PASSWORD"],
            "kafka_ssl_cafile": sasl["KAFKA_SASL_CA_FILE"],
        }
    )
    async with started(settings):
        security = _security(sasl, "PLAIN")
        async with ContactClient(
            settings.kafka_bootstrap_servers, topic_prefix=isolation[0], security=security
        ) as client:
            created = ok(
                await client.command(create_contact(CUST, phone_numbers=[{"number": "+14155550141"}]))
            )
            assert (await client.lookup_phone(CUST, "+14155550141")).result == created


def _env(
    endpoints: Endpoints, isolation: tuple[str, str], sasl: dict[str, str], password: str
) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": sasl["KAFKA_SASL_BOOTSTRAP_SERVERS"],
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
        "KAFKA_SASL_USERNAME": sasl["KAFKA_SASL_USERNAME"],
        "KAFKA_SASL_PASSWORD": password,
        "KAFKA_SSL_CAFILE": sasl["KAFKA_SASL_CA_FILE"],
        "MONGODB_URL": endpoints.mongodb,
        "MONGODB_DATABASE": isolation[1],
        "TOPIC_PREFIX": isolation[0],
        "CONSUMER_GROUP": f"{isolation[0]}svc",
        "HEALTH_PORT": "0",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
    }


async def _run(env: dict[str, str], *, until: str, timeout: float = 60) -> tuple[int | None, list[str]]:
    """The console script's output lines until one contains ``until`` (then SIGTERM) or it exits."""
    script = Path(sys.executable).parent / "contact-service"
    process = await asyncio.create_subprocess_exec(
        str(script), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    lines: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            while line := (await present(process.stdout).readline()).decode():
                lines.append(line.rstrip("\n"))
                if until in line:
                    process.send_signal(signal.SIGTERM)
            return await process.wait(), lines
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        cleanup: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(env["MONGODB_URL"])
        await cleanup.drop_database(env["MONGODB_DATABASE"])
        await cleanup.close()


async def test_wrong_credentials_stop_the_start_with_a_clear_error_and_no_secret_in_it(
    endpoints: Endpoints, isolation: tuple[str, str], sasl: dict[str, str]
) -> None:
    code, lines = await _run(_env(endpoints, isolation, sasl, "not-the-secret-42"), until="never printed")
    assert code not in (0, None)
    assert any("refused user 'contact-service' (SCRAM-SHA-256)" in line for line in lines), lines
    assert not any("not-the-secret-42" in line for line in lines)


async def test_json_logs_carry_one_object_a_line_and_never_the_password(
    endpoints: Endpoints, isolation: tuple[str, str], sasl: dict[str, str]
) -> None:
    password = sasl["KAFKA_SASL_PASSWORD"]
    code, lines = await _run(_env(endpoints, isolation, sasl, password), until="contact-service ready")
    assert code == 0, lines[-20:]
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(records) >= len(lines) - 2 and len(records) > 5  # (uvicorn may print a plain line)
    ready = next(r for r in records if "contact-service ready" in r["message"])
    assert {"time", "level", "logger", "message"} <= set(ready)
    assert not any(password in line for line in lines)
