"""The fault suite: mixed load with injected faults, then invariants (``python -m tests.faults``)."""
