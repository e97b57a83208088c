"""Hostile input against the real service over Kafka (hypothesis-generated).

Several hundred commands, queries, lookups and CRM sync messages, valid and invalid: MongoDB
operator shapes (``{"$ne": null}``, ``{"$gt": ""}``, ``{"$where": ...}``) in any string field,
1 MB strings, 1000 levels of nesting, invalid UTF-8, wrong types, unknown and missing fields,
wrong ``type``. All are sent at once, then the answers are collected (few round trips):

- every request that asked for a reply gets one in time: ok, or an error with a code and message;
- every one without ``reply_to`` that does not parse goes to the dead-letter topic with a
  ``dlq_reason`` (matched by key: each message carries its own marker as key);
- no reply to the attacker ever holds the victim's contact (seeded first): not its id, name, or
  any contact of the victim's customer;
- the service is still up afterwards: health ready, the victim's contact unchanged and found.
"""

import asyncio
import itertools
import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from contracts import headers, topics
from contracts.client import ContactClient
from contracts.commands import COMMAND_ADAPTER
from contracts.errors import ErrorCode
from contracts.queries import LOOKUP_ADAPTER, QUERY_ADAPTER
from contracts.sync import SYNC_ADAPTER
from service.bootstrap import Application
from tests import strategies as s
from tests.conftest import TopicReader
from tests.factories import create_contact, ok

pytestmark = pytest.mark.integration

VICTIM = f"cust-victim-{uuid.uuid4().hex[:8]}"
ATTACKER = "cust-attacker"
VICTIM_NAME = "Vivienne-Secret-Victim"
VICTIM_PHONE = "+15559990001"
VICTIM_EMAIL = "vivienne.victim@example.com"
VICTIM_EXTERNAL = "crm-victim-1"
EXAMPLES = 300
TIMEOUT = 45.0

ADAPTERS: dict[str, TypeAdapter[Any]] = {
    topics.COMMANDS: COMMAND_ADAPTER,
    topics.QUERIES: QUERY_ADAPTER,
    topics.LOOKUPS: LOOKUP_ADAPTER,
    topics.CRM_SYNC: SYNC_ADAPTER,
}


@dataclass(frozen=True)
class Hostile:
    topic: str
    value: bytes
    wants_reply: bool


def bodies(victim_id: str) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """Well-formed messages of every type from the attacker, aimed at the victim where they can be."""
    ids = st.sampled_from((victim_id, "no-such-contact", "x"))
    command_id = st.uuids().map(str)
    base = {"customer_id": ATTACKER}

    def command(kind: str, **fields: Any) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
        return st.fixed_dictionaries({"command_id": command_id, **fields}).map(
            lambda d: (topics.COMMANDS, {"type": kind, **base, **d})
        )

    contact = s.contact_inputs.map(lambda x: x.model_dump(mode="json"))
    sync = {
        "crm": st.just("salesforce"),
        "external_id": st.sampled_from((VICTIM_EXTERNAL, "crm-1")),
        "crm_version": st.integers(0, 10),
    }
    return st.one_of(
        command("create_contact", contact=contact),
        command("update_contact", contact_id=ids, changes=st.just({"first_name": "Mallory"})),
        command("delete_contact", contact_id=ids),
        command("add_phone_number", contact_id=ids, phone_number=st.just({"number": "+15550100009"})),
        command(
            "update_phone_number", contact_id=ids, phone_number_id=ids, changes=st.just({"type": "work"})
        ),
        command("remove_email", contact_id=ids, email_id=ids),
        command("add_tag", contact_id=ids, tag_id=s.tags),
        command("remove_tag", contact_id=ids, tag_id=s.tags),
        command("bulk_create_contacts", contacts=st.lists(contact, min_size=1, max_size=3)),
        command("bulk_delete_contacts", contact_ids=st.lists(ids, min_size=1, max_size=3)),
        st.fixed_dictionaries({"contact_id": ids}).map(
            lambda d: (topics.QUERIES, {"type": "get_contact", **base, **d})
        ),
        st.fixed_dictionaries(
            {"page_size": st.integers(1, 100), "page_token": st.sampled_from(FORGED_TOKENS)}
        ).map(lambda d: (topics.QUERIES, {"type": "list_contacts", **base, **d})),
        st.sampled_from(
            ({"phone": VICTIM_PHONE}, {"email": VICTIM_EMAIL}, {"phone": "5559990001", "region": "US"})
        ).map(lambda d: (topics.LOOKUPS, {"type": "lookup_contact", **base, **d})),
        st.just(
            (
                topics.LOOKUPS,
                {"type": "batch_lookup_contacts", **base, "phones": [VICTIM_PHONE, "555-999-0001"]},
            )
        ),
        st.fixed_dictionaries({**sync, "contact": st.just({"first_name": "Mallory"})}).map(
            lambda d: (topics.CRM_SYNC, {"type": "crm_contact_upserted", **base, **d})
        ),
        st.fixed_dictionaries(sync).map(
            lambda d: (topics.CRM_SYNC, {"type": "crm_contact_deleted", **base, **d})
        ),
    )


def _token(payload: Any) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


FORGED_TOKENS = (
    "",
    "not-a-token!",
    _token(["0001-01-01T00:00:00+05:00", "x"]),  # an instant no store can name in UTC
    _token(["9999-12-31T23:59:59-05:00", "x"]),
    _token(["2026-01-01T00:00:00", "x"]),  # no time zone
    _token([{"$gt": ""}, {"$ne": None}]),
    _token(["2026-01-01T00:00:00+00:00", "|"]),
    _token("ab"),
)


def leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every leaf and every container below the top (so whole objects get replaced too)."""
    found: list[tuple[Any, ...]] = [path] if path else []
    if isinstance(value, dict):
        for k, v in value.items():
            found += leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += leaves(v, (*path, i))
    return found


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: replaced(value[head], rest, new)}
    return [replaced(v, rest, new) if i == head else v for i, v in enumerate(value)]


def removed(value: Any, path: tuple[Any, ...]) -> Any:
    if len(path) == 1:
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k != path[0]}
        return [v for i, v in enumerate(value) if i != path[0]]
    head = path[0]
    if isinstance(value, dict):
        return {**value, head: removed(value[head], path[1:])}
    return [removed(v, path[1:]) if i == head else v for i, v in enumerate(value)]


LIGHT_HOSTILE = st.one_of(
    st.sampled_from(s.OPERATORS),
    s.weird_scalars,
    st.lists(s.weird_scalars, max_size=3),
    st.dictionaries(st.text(max_size=5), s.weird_scalars, max_size=3),
)
"""Hostile values cheap enough for hundreds of messages (1 MB and deep nesting: see SPECIALS)."""


@st.composite
def hostile(draw: st.DrawFn, victim_id: str) -> Hostile:
    topic, body = draw(bodies(victim_id))
    how = draw(
        st.sampled_from(("valid", "replace", "replace", "replace", "unknown", "missing", "type", "raw"))
    )
    value: Any = body
    if how == "replace":
        path = draw(st.sampled_from(leaves(body)))
        value = replaced(body, path, draw(LIGHT_HOSTILE))
    elif how == "unknown":
        path = draw(st.sampled_from([(), *[p for p in leaves(body) if isinstance(_at(body, p), dict)]]))
        value = replaced(
            body,
            path,
            {
                **_at(body, path),
                draw(st.sampled_from(("id", "$where", "tm_delete", "zz"))): draw(LIGHT_HOSTILE),
            },
        )
    elif how == "missing":
        value = removed(body, draw(st.sampled_from(leaves(body))))
    elif how == "type":
        value = {
            **body,
            "type": draw(
                st.one_of(
                    st.sampled_from(
                        (
                            "get_contact",
                            "lookup_contact",
                            "create_contact",
                            "crm_contact_deleted",
                            "rename_contact",
                            "",
                        )
                    ),
                    LIGHT_HOSTILE,
                )
            ),
        }
    raw = s.to_json(value)
    if how == "raw":
        raw = draw(
            st.sampled_from(
                (
                    raw.replace(ATTACKER.encode(), b"cust-\xff\xfeattacker"),  # invalid UTF-8
                    raw[: len(raw) // 2],  # truncated
                    b"\x00garbage",
                    b"[]",
                    b"42",
                    b'"a string"',
                    b"null",
                    b"",
                    raw.replace(b"{", b'{"type": "get_contact",', 1),  # a second "type"
                )
            )
        )
    # CRM sync is never answered: bad sync messages always go to the dead-letter topic.
    return Hostile(topic, raw, topic != topics.CRM_SYNC and draw(st.booleans()))


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        value = value[p]
    return value


def deep(depth: int) -> bytes:
    """``depth`` levels of lists and objects, as raw JSON (json.dumps would hit Python's recursion limit)."""
    opens, closes = [], []
    for level in range(depth):
        opens.append("[" if level % 2 else '{"a":')
        closes.append("]" if level % 2 else "}")
    return ("".join(opens) + '"leaf"' + "".join(reversed(closes))).encode()


def specials(victim_id: str) -> list[Hostile]:
    """Huge strings and deep nesting in the fields attackers reach for, on every topic."""
    huge = "A" * (900 * 1024)  # the broker's default record limit is 1 MB
    nested = deep(1000).decode()
    made: list[Hostile] = []
    templates = [
        (
            topics.COMMANDS,
            {
                "type": "create_contact",
                "command_id": "c",
                "customer_id": "CUST",
                "contact": {"first_name": "FIELD"},
            },
        ),
        (
            topics.COMMANDS,
            {
                "type": "update_contact",
                "command_id": "c",
                "customer_id": "CUST",
                "contact_id": victim_id,
                "changes": {"notes": "FIELD"},
            },
        ),
        (topics.QUERIES, {"type": "get_contact", "customer_id": "CUST", "contact_id": "FIELD"}),
        (topics.QUERIES, {"type": "list_contacts", "customer_id": "CUST", "page_token": "FIELD"}),
        (topics.LOOKUPS, {"type": "lookup_contact", "customer_id": "CUST", "phone": "FIELD"}),
        (topics.LOOKUPS, {"type": "lookup_contact", "customer_id": "CUST", "email": "FIELD"}),
        (
            topics.CRM_SYNC,
            {
                "type": "crm_contact_upserted",
                "customer_id": "CUST",
                "crm": "x",
                "external_id": "FIELD",
                "crm_version": 1,
                "contact": {},
            },
        ),
    ]
    for topic, template in templates:
        text = json.dumps(template)
        for filler in (json.dumps(huge), nested, '{"$where": "sleep(1000)"}', '{"$ne": null}'):
            for where in ('"FIELD"', '"CUST"'):
                raw = (
                    text.replace(where, filler)
                    .replace('"CUST"', json.dumps(ATTACKER))
                    .replace('"FIELD"', '"f"')
                )
                for wants_reply in (True, False) if topic != topics.CRM_SYNC else (False,):
                    made.append(Hostile(topic, raw.encode(), wants_reply))
    made.append(Hostile(topics.COMMANDS, deep(1000), True))
    made.append(Hostile(topics.LOOKUPS, deep(1000), False))
    return made


def draw_many(victim_id: str, count: int) -> list[Hostile]:
    """``count`` messages from hypothesis (generation only: the Kafka round trips happen once)."""
    drawn: list[Hostile] = []

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile(victim_id))
    def collect(message: Hostile) -> None:
        drawn.append(message)

    collect()
    return drawn


def parses(message: Hostile) -> bool:
    try:
        ADAPTERS[message.topic].validate_json(message.value)
    except (ValidationError, ValueError):
        return False
    return True


def contacts_in(value: Any) -> list[dict[str, Any]]:
    """Every object in a reply that looks like a contact (has a customer_id)."""
    if isinstance(value, dict):
        own = [value] if "customer_id" in value else []
        return own + [c for v in value.values() for c in contacts_in(v)]
    if isinstance(value, list):
        return [c for v in value for c in contacts_in(v)]
    return []


async def test_hostile_input_is_answered_or_dead_lettered_never_crashes_never_crosses_tenants(
    running_service: Application, client: ContactClient
) -> None:
    victim = ok(
        await client.command(
            create_contact(
                VICTIM,
                first_name=VICTIM_NAME,
                external_id=VICTIM_EXTERNAL,
                phone_numbers=[{"number": VICTIM_PHONE}],
                emails=[{"address": VICTIM_EMAIL}],
            )
        )
    )
    messages = draw_many(victim.id, EXAMPLES) + specials(victim.id)
    markers = (f"hostile-{i}" for i in itertools.count())
    keyed = [(next(markers), m) for m in messages]

    async def ask(key: str, message: Hostile) -> bytes:
        return await client.request_raw(message.topic, message.value, key=key, timeout=TIMEOUT)

    asked = [(k, m) for k, m in keyed if m.wants_reply]
    told = [(k, m) for k, m in keyed if not m.wants_reply]
    replies, _ = await asyncio.gather(
        asyncio.gather(*(ask(k, m) for k, m in asked), return_exceptions=True),
        asyncio.gather(*(client.send_raw(m.topic, m.value, key=k) for k, m in told)),
    )

    for (key, message), reply in zip(asked, replies, strict=True):
        assert isinstance(reply, bytes), f"{key} {message.topic} {message.value[:300]!r}: {reply!r}"
        assert VICTIM_NAME.encode() not in reply, (key, reply[:500])
        body = json.loads(reply)
        # The error (or a bulk delete's not_found) may echo the id asked about; nothing else may.
        rest = {k: v for k, v in body.items() if k not in {"error", "not_found"}}
        assert victim.id not in json.dumps(rest), (key, body)
        assert isinstance(body, dict) and isinstance(body.get("ok"), bool), reply[:300]
        if not body["ok"]:
            error = body["error"]
            assert error["code"] in set(ErrorCode) and error["message"], body
        if not parses(message):
            assert not body["ok"], (key, message.value[:300], body)
            assert body["error"]["code"] in {
                "INVALID_ARGUMENT",
                "MALFORMED_MESSAGE",
                "UNKNOWN_MESSAGE_TYPE",
            }, body
        assert all(c["customer_id"] != VICTIM for c in contacts_in(body)), (key, body)

    expected_dead = {k for k, m in told if not parses(m)}
    reader = TopicReader(
        running_service.settings.kafka_bootstrap_servers, running_service.settings.topic(topics.DEAD_LETTERS)
    )
    dead = await reader.read(at_least=len(expected_dead), timeout=TIMEOUT, settle=2.0)
    by_key = {(r.key or b"").decode(): dict(r.headers) for r in dead}
    missing = sorted(expected_dead - set(by_key))
    assert not missing, [(k, dict(told)[k].value[:200]) for k in missing[:5]]
    for key in expected_dead:
        assert by_key[key].get(headers.DLQ_REASON), (key, by_key[key])
    # Nothing that asked for a reply, and nothing valid, was parked (processing failed, nobody told).
    wrongly = sorted(set(by_key) - expected_dead)
    assert not wrongly, [
        (k, by_key[k].get(headers.DLQ_REASON), by_key[k].get(headers.DLQ_MESSAGE)) for k in wrongly[:5]
    ]

    # Still up, and the victim's contact as it was.
    assert await running_service.health.readiness() == {"broker": True, "store": True}
    assert ok(await client.get(VICTIM, victim.id)) == victim
    assert ok(await client.lookup_phone(VICTIM, VICTIM_PHONE)).id == victim.id
    assert ok(await client.lookup_email(VICTIM, VICTIM_EMAIL)).id == victim.id
    stranger = await client.lookup_phone(ATTACKER, VICTIM_PHONE)
    assert stranger.error is not None and stranger.error.code == "CONTACT_NOT_FOUND"
