"""Operators' toolkit: the ``contact-service ops`` command and what it does."""
