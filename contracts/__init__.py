"""The contact service's wire contract: topics, headers and pydantic v2 models.

Other teams install this package (the ``contact-service-contracts`` distribution, built from this
directory) to talk to the service; it imports only pydantic and the standard library
(``contracts.client`` adds aiokafka).
"""

__version__ = "0.1.0"
"""The distribution's version (contracts/pyproject.toml reads it from here)."""
