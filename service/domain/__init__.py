"""Contacts, addresses and normalization rules. Pure Python: no I/O, no wire models."""
