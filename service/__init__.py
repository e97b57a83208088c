"""Contact and caller-identity service."""
