"""The contact service's wire contract: topics, headers and pydantic v2 models.

Other teams install this package to talk to the service; it imports only pydantic and the
standard library (``contracts.client`` adds aiokafka).
"""
