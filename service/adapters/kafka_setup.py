"""Kafka at start-up: the broker's security in FastStream's terms, a pre-flight handshake that names
refused credentials, and the service's topics."""

import contextlib
import ssl

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, SaslAuthenticationFailed, TopicAlreadyExistsError
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from contracts.security import KafkaSecurity
from service.compat import kafka_handshake
from service.config import Settings


class StartupError(Exception):
    """The service cannot start; the message says why, for the person starting it."""


async def check_kafka_access(settings: Settings) -> None:
    """With TLS or SASL configured, one handshake with the first broker before anything else:
    wrong credentials or a CA that does not match stop the start with the reason."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return
    first = settings.kafka_bootstrap_servers.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    try:
        await kafka_handshake(host, int(port), settings.kafka_security.client_options())
    except SaslAuthenticationFailed as exc:
        user, mechanism = settings.kafka_sasl_username, settings.kafka_sasl_mechanism
        raise StartupError(f"Kafka at {first} refused user {user!r} ({mechanism}): {exc}") from None
    except ssl.SSLError as exc:
        raise StartupError(f"TLS with Kafka at {first} failed (KAFKA_SSL_CAFILE?): {exc}") from None
    except (KafkaError, OSError) as exc:
        raise StartupError(
            f"cannot reach Kafka at {first} over {settings.kafka_security_protocol}: {exc}"
        ) from None


async def ensure_topics(settings: Settings) -> None:
    """Create the service's topics with the configured partitions; existing topics are left alone."""
    admin = AIOKafkaAdminClient(**settings.kafka_options(), client_id="contact-service-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, settings.topic_partitions, settings.topic_replication_factor)
            for name in settings.all_topics()
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
    finally:
        await admin.close()


def broker_security(security: KafkaSecurity) -> BaseSecurity | None:
    """The FastStream form of the service's Kafka security settings."""
    context = security.client_options().get("ssl_context")
    password = security.password.get_secret_value()
    tls = security.uses_tls
    if security.sasl_mechanism == "PLAIN" and security.protocol.startswith("SASL"):
        return SASLPlaintext(security.username, password, ssl_context=context, use_ssl=tls)
    if security.sasl_mechanism == "SCRAM-SHA-256" and security.protocol.startswith("SASL"):
        return SASLScram256(security.username, password, ssl_context=context, use_ssl=tls)
    if security.protocol.startswith("SASL"):
        return SASLScram512(security.username, password, ssl_context=context, use_ssl=tls)
    return BaseSecurity(ssl_context=context, use_ssl=True) if security.uses_tls else None
