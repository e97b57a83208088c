"""How a Kafka client authenticates and encrypts: SASL (PLAIN, SCRAM-SHA-256/512) over TLS or
plaintext, a CA file, a client certificate. The service's clients and ``ContactClient`` all take it."""

from typing import Any, Literal

from aiokafka.helpers import create_ssl_context
from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSecurity(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: Protocol = "PLAINTEXT"
    sasl_mechanism: Mechanism = "PLAIN"
    username: str = ""
    password: SecretStr = SecretStr("")
    ca_file: str | None = None
    """PEM file of the CA that signed the brokers' certificates (else the system's trust store)."""
    cert_file: str | None = None
    """PEM client certificate, for brokers that authenticate clients by certificate."""
    key_file: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> "KafkaSecurity":
        if self.protocol.startswith("SASL") and not self.username:
            raise ValueError(f"{self.protocol} needs a SASL username and password")
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("a client certificate needs both its certificate and its key file")
        return self

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producers, consumers and admin clients."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            options["ssl_context"] = create_ssl_context(
                cafile=self.ca_file, certfile=self.cert_file, keyfile=self.key_file
            )
        if self.protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.username
            options["sasl_plain_password"] = self.password.get_secret_value()
        return options
