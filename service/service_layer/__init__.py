"""Use cases: one handler per command or query, talking to infrastructure through ports."""
