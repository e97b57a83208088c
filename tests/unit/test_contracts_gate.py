"""The compatibility gate (deploy/contracts/gate.py) catches planted breaking changes.

Each test copies today's schemas (docs/schemas/) as the released baseline, plants a change in the
current copy and asks the gate: a breaking change fails naming the topic, the message and the
field; a compatible one passes; a breaking one with the topic's version bumped passes.
"""

import copy
import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from service import schemas

REPO = Path(__file__).resolve().parents[2]


def _load_gate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("contracts_gate", REPO / "deploy" / "contracts" / "gate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gate = _load_gate()
Tree = dict[str, dict[str, Any]]


@pytest.fixture
def today() -> Tree:
    """Today's schemas, as the gate loads them (generated, so this does not depend on the copy)."""
    tree: Tree = {}
    for relative, text in schemas.render().items():
        topic, name = relative.split("/", 1)
        tree.setdefault(topic, {})[name] = json.loads(text)
    return tree


def _judge(baseline: Tree, current: Tree) -> tuple[bool, str]:
    report = gate.compare(baseline, current)
    return report.ok, "\n".join(report.breaking)


def _props(schema: dict[str, Any], *path: str) -> dict[str, Any]:
    """The ``properties`` of the object at ``path`` (through $defs references)."""
    node = schema
    for name in path:
        node = node["properties"][name]
        for branch in node.get("anyOf", [node]):
            if "$ref" in branch:
                node = schema["$defs"][branch["$ref"].rsplit("/", 1)[-1]]
                break
    props: dict[str, Any] = node["properties"]
    return props


def test_todays_schemas_pass_against_themselves(today: Tree) -> None:
    assert _judge(today, copy.deepcopy(today)) == (True, "")


def test_the_committed_baseline_passes() -> None:
    released = gate.load(REPO / "docs" / "schemas" / "released")
    assert released, "docs/schemas/released/ is empty: run deploy/contracts/gate.py --release"
    ok, breaking = _judge(released, gate.load(REPO / "docs" / "schemas"))
    assert ok, breaking


def test_removed_field_breaks(today: Tree) -> None:
    current = copy.deepcopy(today)
    del _props(current["contacts.commands.v1"]["create_contact.json"], "contact")["company"]
    ok, breaking = _judge(today, current)
    assert not ok
    assert "contacts.commands.v1 create_contact: field `contact.company` removed" in breaking


def test_removed_field_of_an_emitted_event_breaks(today: Tree) -> None:
    current = copy.deepcopy(today)
    del _props(current["contacts.events.v1"]["contact.updated.json"])["changed_fields"]
    ok, breaking = _judge(today, current)
    assert not ok
    assert "contacts.events.v1 contact.updated: field `changed_fields` removed (out)" in breaking


def test_retyped_field_breaks(today: Tree) -> None:
    current = copy.deepcopy(today)
    _props(current["contacts.queries.v1"]["list_contacts.json"])["page_size"] = {"type": "string"}
    ok, breaking = _judge(today, current)
    assert not ok
    assert "contacts.queries.v1 list_contacts: field `page_size` retyped: integer -> string" in breaking


def test_emitted_field_becoming_nullable_breaks(today: Tree) -> None:
    current = copy.deepcopy(today)
    props = _props(current["contacts.sync-results.v1"]["SyncResult.json"])
    props["order"] = {"anyOf": [props["order"], {"type": "null"}]}
    ok, breaking = _judge(today, current)
    assert not ok
    assert "contacts.sync-results.v1 SyncResult: field `order` retyped: integer -> integer|null" in breaking


def test_added_required_field_breaks(today: Tree) -> None:
    current = copy.deepcopy(today)
    schema = current["contacts.crm-sync.v1"]["crm_contact_deleted.json"]
    schema["properties"]["reason"] = {"type": "string"}
    schema["required"].append("reason")
    ok, breaking = _judge(today, current)
    assert not ok
    assert "contacts.crm-sync.v1 crm_contact_deleted: field `reason` required field added (in)" in breaking


def test_removed_enum_value_breaks(today: Tree) -> None:
    current = copy.deepcopy(today)
    phone_type = current["contacts.commands.v1"]["add_phone_number.json"]["$defs"]["PhoneNumberType"]
    phone_type["enum"].remove("fax")
    ok, breaking = _judge(today, current)
    assert not ok
    assert (
        'contacts.commands.v1 add_phone_number: field `phone_number.type` enum value(s) removed: "fax"'
        in breaking
    )


def test_removed_message_breaks(today: Tree) -> None:
    current = copy.deepcopy(today)
    del current["contacts.commands.v1"]["add_tag.json"]
    assert _judge(today, current) == (False, "contacts.commands.v1 add_tag: message removed")


def test_added_optional_field_is_compatible(today: Tree) -> None:
    current = copy.deepcopy(today)
    _props(current["contacts.commands.v1"]["create_contact.json"], "contact")["nickname"] = {
        "type": "string",
        "default": "",
    }
    _props(current["contacts.events.v1"]["contact.created.json"])["trace_id"] = {"type": "string"}
    report = gate.compare(today, current)
    assert report.ok, report.breaking
    assert any("`contact.nickname` added (optional)" in note for note in report.notes)


def test_added_enum_value_is_compatible_both_ways(today: Tree) -> None:
    current = copy.deepcopy(today)
    for files in current.values():
        for schema in files.values():
            if "ErrorCode" in schema.get("$defs", {}):
                schema["$defs"]["ErrorCode"]["enum"].append("RATE_LIMITED")
    assert gate.compare(today, current).ok


def test_breaking_change_with_a_bumped_topic_version_passes(today: Tree) -> None:
    current = copy.deepcopy(today)
    bumped = current.pop("contacts.events.v1")
    del _props(bumped["contact.updated.json"])["changed_fields"]
    current["contacts.events.v2"] = bumped
    report = gate.compare(today, current)
    assert report.ok, report.breaking
    assert "contacts.events.v1: retired, superseded by contacts.events.v2" in report.notes
    assert "contacts.events.v2: new topic, no released baseline yet" in report.notes


def test_removed_topic_without_a_successor_breaks(today: Tree) -> None:
    current = copy.deepcopy(today)
    del current["contacts.sync-results.v1"]
    ok, breaking = _judge(today, current)
    assert not ok and "contacts.sync-results.v1: topic removed" in breaking


def test_cli_fails_on_a_planted_change_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs" / "schemas"
    shutil.copytree(REPO / "docs" / "schemas", docs, ignore=shutil.ignore_patterns("released"))
    assert gate.main(["--root", str(tmp_path), "--release"]) == 0
    path = docs / "contacts.lookups.v1" / "lookup_contact.json"
    schema = json.loads(path.read_text())
    del schema["properties"]["region"]
    path.write_text(json.dumps(schema))
    assert gate.main(["--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "[gate] BREAKING contacts.lookups.v1 lookup_contact: field `region` removed (in)" in out
    assert "[gate] FAILED" in out
