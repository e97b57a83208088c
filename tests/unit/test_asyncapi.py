"""The committed AsyncAPI document is the one the code generates."""

import json

import pytest

from contracts import topics
from service.asyncapi import DOCUMENT, render


def test_committed_asyncapi_document_matches_the_code() -> None:
    assert DOCUMENT.read_text() == render(), "docs/asyncapi.json drifted: run `python -m service.asyncapi`"


@pytest.mark.parametrize("topic", topics.ALL)
def test_every_topic_is_documented_with_a_description(topic: str) -> None:
    channels = json.loads(render())["channels"].values()
    described = {c["address"]: c.get("description", "") for c in channels}
    assert described.get(topic), f"{topic} missing or undescribed in the AsyncAPI document"
